//go:build e2e

package e2e

// A domain's files across save and restore, managed save, and a defined
// (persistent) domain's whole life; and a <transient/> disk (see TestLive).

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// saveRestore: `virsh save` stops the domain (release), `virsh restore`
// starts it again from the image (prepare again, with the saved XML).
func saveRestore(t *testing.T) {
	f := newFixture(t)
	alice := f.h.alice.owner()
	name := domainPrefix + "save"
	_, top := f.chain("", alice)
	raw := f.rawImage("data.raw", f.h.bob.owner())
	f.mustStart(domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", top.path, "vda"), fileDisk("raw", raw.path, "vdb")}})
	f.check("running", true, name)
	img := filepath.Join(f.dir, "vm.save")
	f.mustVirsh(name, "save", name, img)
	f.waitGone(name)
	f.observe("after save")
	f.check("after save", false, name)
	f.mustVirsh(name, "restore", img)
	t.Cleanup(func() { _, _ = virsh(time.Minute, "destroy", name) })
	f.check("restored", true, name)
	f.destroy(name)
	f.observe("after destroy")
	f.check("after destroy", false, name)
}

// definedManagedSave: define, start, managedsave (stops the domain), start
// (restores it from the managed save), destroy, undefine.
func definedManagedSave(t *testing.T) {
	f := newFixture(t)
	name := domainPrefix + "defined"
	_, top := f.chain("", f.h.alice.owner())
	raw := f.rawImage("data.raw", f.h.bob.owner())
	xmlPath := f.writeXML(name, domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", top.path, "vda"), fileDisk("raw", raw.path, "vdb")}}.xml())
	f.mustVirsh(name, "define", xmlPath)
	t.Cleanup(func() {
		_, _ = virsh(time.Minute, "destroy", name)
		_, _ = virsh(time.Minute, "undefine", name, "--managed-save")
	})
	f.check("defined, not started", false, name)
	f.mustVirsh(name, "start", name)
	f.check("started", true, name)
	f.mustVirsh(name, "managedsave", name)
	f.waitGone(name)
	managed := f.host.path("/var/lib/libvirt/qemu/save/" + name + ".save")
	f.observe("after managedsave", managed)
	f.check("after managedsave", false, name)
	f.mustVirsh(name, "start", name)
	f.check("started from the managed save", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
	f.mustVirsh(name, "undefine", name, "--managed-save")
	if _, err := virsh(10*time.Second, "domstate", name); err == nil {
		t.Errorf("%s still defined after undefine", name)
	}
	f.check("after undefine", false, name)
}

// transientDisk: QEMU writes to a throw-away overlay libvirt creates next
// to the image. Cooperative mode runs it and gives the image back; strict
// mode cannot (libvirt would create the overlay as root and never give it
// to QEMU), so prepare refuses with one line saying to use cooperative
// mode, and nothing changes on disk.
func transientDisk(t *testing.T) {
	f := newFixture(t)
	name := domainPrefix + "transient"
	img := f.track(f.image("disk.qcow2", "qcow2", "16M", "", f.h.alice.owner(), 0o600), f.h.qemu.owner())
	spec := domainSpec{Name: name, Disks: []disk{{Format: "qcow2", Source: img.path, Target: "vda", Transient: true}}}
	if !f.strict() {
		f.mustStart(spec)
		f.check("running", true, name)
		f.observe("running")
		f.destroy(name)
		f.observe("after destroy")
		f.check("after destroy", false, name)
		return
	}
	before := dirNames(t, f.dir)
	out, err := f.start(spec)
	if err == nil {
		t.Errorf("strict mode started %s with a <transient/> disk; prepare must refuse it", name)
		f.observe("running (should not be)")
		f.destroy(name)
	} else {
		logBlock(t, "libvirt error (refusal expected)", out)
		// libvirt wraps the hook's stderr: "... unexpected exit status 1: <the hook's line>".
		_, hookMsg, found := strings.Cut(out, "unexpected exit status 1: ")
		switch {
		case !found:
			t.Errorf("the refusal did not come from the hook (no \"unexpected exit status 1: \" in libvirt's error)")
		case strings.Contains(strings.TrimSpace(hookMsg), "\n"):
			t.Errorf("the hook's refusal is more than one line: %q", hookMsg)
		case !strings.Contains(strings.ToLower(hookMsg), "transient") || !strings.Contains(strings.ToLower(hookMsg), "cooperative"):
			t.Errorf("the hook's refusal %q does not say the <transient/> disk needs cooperative mode", hookMsg)
		}
	}
	if after := dirNames(t, f.dir); !slices.Equal(before, after) {
		t.Errorf("the refused start changed %s: entries %v, were %v", f.dir, after, before)
	}
	f.check("after refused start", false, name)
}

// dirNames lists dir's entries, domain XMLs aside.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".xml") {
			names = append(names, e.Name())
		}
	}
	return names
}
