//go:build e2e

package e2e

// Snapshots and block jobs on a running domain (see TestLive). In strict
// mode the admin creates the new image (owned by alice, 0600), grants it
// and lets libvirt reuse it (--reuse-external): libvirt would create it as
// root and, with dynamic_ownership = 0, never give it to QEMU. In
// cooperative mode libvirt creates it and labels it; after the domain
// stops it must not be left to QEMU (libvirt created it as root, so
// root:root or whatever libvirt made it is its true owner; observed).

import (
	"path/filepath"
	"testing"
	"time"
)

// newImage is the path of an image a live operation adds: in strict mode
// it is created now, over backing (qcow2) or empty (raw), owned by alice,
// tracked and granted to domain; in cooperative mode it is only named,
// and libvirt creates it.
func (f *fixture) newImage(domain, name, format, backing string) (string, *tracked) {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if !f.strict() {
		return p, nil
	}
	size := "8M"
	if backing != "" {
		size = ""
	}
	f.image(name, format, size, backing, f.h.alice.owner(), 0o600)
	tr := f.track(p, f.h.qemu.owner())
	// --format: a qcow2 overlay is granted with its backing chain (already
	// the domain's), as prepare would.
	f.hookMust(domain, "grant", "--format", format, domain, p)
	return p, tr
}

// reuse is the flag that makes libvirt take the image newImage made.
func (f *fixture) reuse() []string {
	if f.strict() {
		return []string{"--reuse-external"}
	}
	return nil
}

// snapshot takes an external disk-only snapshot of vda into a new overlay
// over the current top and returns the overlay's path.
func (f *fixture) snapshot(domain string, top *tracked) (string, *tracked) {
	f.t.Helper()
	s1, s1T := f.newImage(domain, "s1.qcow2", "qcow2", top.path)
	args := append([]string{"snapshot-create-as", domain, "s1", "--disk-only", "--atomic", "--no-metadata",
		"--diskspec", "vda,snapshot=external,file=" + s1}, f.reuse()...)
	f.mustVirsh(domain, args...)
	return s1, s1T
}

// snapshotThenStop: the old top becomes a backing file of the new
// overlay, and everything goes back when the domain stops.
func snapshotThenStop(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	name := domainPrefix + "snapshot"
	base, top := f.chain("", f.h.alice.owner())
	f.mustStart(domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", top.path, "vda")}})
	f.check("running", true, name)
	s1, _ := f.snapshot(name, top)
	f.wantPath("after snapshot", s1, q, name)
	f.want("after snapshot", q, name, top, base)
	f.observe("after snapshot")
	f.destroy(name)
	f.observe("after destroy")
	f.check("after destroy", false, name)
}

// snapshotBlockcommit: snapshot, then commit the overlay back into the old
// top (--active --pivot): QEMU writes the old top again and drops the
// overlay.
func snapshotBlockcommit(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	name := domainPrefix + "commit"
	base, top := f.chain("", f.h.alice.owner())
	f.mustStart(domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", top.path, "vda")}})
	s1, _ := f.snapshot(name, top)
	f.wantPath("after snapshot", s1, q, name)
	f.mustVirsh(name, "blockcommit", name, "vda", "--active", "--pivot", "--wait")
	f.want("after blockcommit --active --pivot", q, name, top, base)
	f.observe("after blockcommit")
	f.destroy(name)
	f.observe("after destroy")
	f.check("after destroy", false, name)
}

// blockcopyPivot: copy the disk to a new image and pivot to it. A
// transient domain needs no --transient-job; a defined one (defined) does,
// so that libvirt need not rewrite its definition: the copy without the
// flag is tried first and libvirt's answer logged.
func blockcopyPivot(t *testing.T, defined bool) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	name := domainPrefix + "blockcopy"
	src := f.rawImage("src.raw", f.h.alice.owner())
	spec := domainSpec{Name: name, SCSI: true, Disks: []disk{{Format: "raw", Source: src.path, Target: "sda", Bus: "scsi"}}}
	if defined {
		f.mustVirsh(name, "define", f.writeXML(name, spec.xml()))
		t.Cleanup(func() {
			_, _ = virsh(time.Minute, "destroy", name)
			_, _ = virsh(time.Minute, "undefine", name)
		})
		f.mustVirsh(name, "start", name)
	} else {
		f.mustStart(spec)
	}
	f.check("running", true, name)
	dest, _ := f.newImage(name, "dest.raw", "raw", "")
	args := append([]string{"blockcopy", name, "sda", dest, "--format", "raw", "--wait", "--pivot"}, f.reuse()...)
	copied := false
	if defined {
		out, err := virsh(time.Minute, args...)
		if copied = err == nil; copied {
			t.Logf("libvirt ran blockcopy on the defined domain %s without --transient-job: %s", name, out)
		} else {
			logBlock(t, "blockcopy of a defined domain without --transient-job (libvirt's answer)", out)
			f.want("after the refused blockcopy", q, name, src)
			args = append(args, "--transient-job")
		}
	}
	if !copied {
		f.mustVirsh(name, args...)
	}
	f.wantPath("after blockcopy --pivot", dest, q, name)
	f.observe("after blockcopy --pivot")
	f.destroy(name)
	f.observe("after destroy")
	f.check("after destroy", false, name)
	if defined {
		f.mustVirsh(name, "undefine", name)
	}
}

// wantPath checks that p, tracked or not, is owned by o now.
func (f *fixture) wantPath(phase, p string, o owner, domain string) {
	f.t.Helper()
	for _, tr := range f.files {
		if tr.path == p {
			f.want(phase, o, domain, tr)
			return
		}
	}
	tr := &tracked{path: p}
	fi, err := statMode(p)
	if err != nil {
		f.t.Errorf("%s: %v", phase, err)
		return
	}
	tr.mode = fi
	if !f.checkOne(phase, tr, o) {
		f.observe(phase)
		f.host.diagnose(f.t, domain)
	}
}
