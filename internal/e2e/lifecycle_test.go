//go:build e2e

package e2e

// Lifecycle scenarios: a real libvirtd starts real QEMU processes whose
// only way to open their disks is the ownership they are given (by the hook
// alone in strict mode; by libvirt, with the hook recording and repairing,
// in cooperative mode). Every file starts owned by users that are neither
// root nor QEMU, with modes that keep QEMU out, so a missed chown makes the
// VM fail to start rather than pass by accident.
//
// The scenarios listed in modeScenarios run here in strict mode and again
// in each cooperative mode under TestLive: their bodies read the host's
// mode from the harness.
//
// Backing files are owned by the same uid as the overlay naming them: by
// default the hook only follows a header to a file owned by root, the QEMU
// user or the overlay's owner (backing_any_owner); TestForeignBacking checks
// that refusal.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// modeScenarios are the lifecycle bodies that hold in every mode.
var modeScenarios = []struct {
	name string
	run  func(t *testing.T)
}{
	{"DiskKinds", diskKinds},
	{"Kill9", kill9},
	{"LibvirtdRestart", libvirtdRestart},
	{"StaticSeclabel", staticSeclabel},
	{"Concurrent", concurrent},
	{"SharedBaseForeign2", func(t *testing.T) { sharedBaseForeign(t, 2) }},
	{"SharedBaseForeign6", func(t *testing.T) { sharedBaseForeign(t, 6) }},
	{"ParentDir0700", parentDir0700},
}

func TestDiskKinds(t *testing.T)       { diskKinds(t) }
func TestKill9(t *testing.T)           { kill9(t) }
func TestLibvirtdRestart(t *testing.T) { libvirtdRestart(t) }
func TestStaticSeclabel(t *testing.T)  { staticSeclabel(t) }
func TestConcurrent(t *testing.T)      { concurrent(t) }
func TestSharedBaseForeign(t *testing.T) {
	t.Run("2", func(t *testing.T) { sharedBaseForeign(t, 2) })
	t.Run("6", func(t *testing.T) { sharedBaseForeign(t, 6) })
}

// diskKinds: every kind of disk source the hook handles in one VM.
func diskKinds(t *testing.T) {
	f := newFixture(t)
	h := f.h
	q := h.qemu.owner()
	alice, bob := h.alice.owner(), h.bob.owner()

	base := f.image("base.qcow2", "qcow2", "16M", "", alice, 0o400)
	over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", owner{alice.uid, bob.gid}, 0o600)
	iso := f.image("cdrom.iso", "raw", "1M", "", bob, 0o400)
	shared := f.image("shared.raw", "raw", "8M", "", owner{bob.uid, alice.gid}, 0o660)
	dev := f.loop(alice, 0o600)
	name := domainPrefix + "kinds"
	for _, p := range []string{base, over, raw, iso, shared} {
		f.track(p, q)
	}
	f.track(dev, q).nsDomain = name

	cdrom := disk{Type: "file", Device: "cdrom", Format: "raw", Source: iso, Target: "hdc", Bus: "ide", ReadOnly: true}
	sh := fileDisk("raw", shared, "vdc")
	sh.Shareable, sh.Cache = true, "none"
	f.mustStart(domainSpec{Name: name, Disks: []disk{
		fileDisk("qcow2", over, "vda"),
		fileDisk("raw", raw, "vdb"),
		sh,
		{Type: "block", Device: "disk", Format: "raw", Source: dev, Target: "vdd", Bus: "virtio"},
		cdrom,
	}})
	f.checkQEMURunsAs(name, q)
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}

// kill9: QEMU dies without libvirt asking; libvirt still calls release.
func kill9(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", owner{alice.uid, bob.gid}, 0o440)
	over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", alice, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, q)
	}
	name := domainPrefix + "kill9"
	f.mustStart(domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}})
	f.check("running", true, name)
	pid := qemuPID(t, name)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	f.waitGone(name)
	f.check("after kill -9", false, name)
}

// libvirtdRestart: the VM outlives a libvirtd restart; release comes
// from the new daemon, which never saw prepare.
func libvirtdRestart(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", owner{alice.uid, bob.gid}, 0o400)
	over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", bob, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, q)
	}
	name := domainPrefix + "restart"
	f.mustStart(domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}})
	f.check("running", true, name)

	if err := f.host.restartLibvirtd(); err != nil {
		t.Fatal(err)
	}
	if out, err := virsh(10*time.Second, "domstate", name); err != nil || out != "running" {
		t.Fatalf("after libvirtd restart, domstate %s = %q, %v; want running", name, out, err)
	}
	f.check("running after libvirtd restart", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}

// staticSeclabel: a static DAC label makes QEMU run as that user, so
// the files belong to it (not to qemu.conf's user) while the VM runs.
func staticSeclabel(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", bob, 0o400)
	over := f.image("overlay.qcow2", "qcow2", "", base, bob, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", bob, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, alice)
	}
	name := domainPrefix + "static"
	label := fmt.Sprintf("<seclabel type='static' model='dac' relabel='yes'><label>+%d:+%d</label></seclabel>", alice.uid, alice.gid)
	spec := domainSpec{Name: name, Seclabel: label, Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}}
	if out, err := f.start(spec); err != nil {
		// libvirt chowns the domain's private files (master-key.aes) to
		// the label user even with dynamic_ownership = 0, but the user
		// must also traverse /var/lib/libvirt/qemu (0750, QEMU's user and
		// group), which nobody grants it.
		if strings.Contains(out, "/var/lib/libvirt/qemu/") && strings.Contains(out, "Permission denied") {
			t.Logf("hint: the label user %s cannot reach libvirt's per-domain directory under /var/lib/libvirt/qemu; the hook has to grant traversal (e.g. an ACL) for static labels", aliceName)
		}
		t.Errorf("virsh create %s: %v", name, err)
		logBlock(t, "libvirt error", out)
		f.h.diagnose(t, name)
		t.FailNow()
	}
	f.checkQEMURunsAs(name, alice)
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}

// TestDomainNoRelabel: with relabelling off for the whole domain the hook
// must change nothing. The files are world-readable and -writable so QEMU
// can use them without help, and owned by someone else than QEMU so any
// chown (even one undone later) is visible while the VM runs.
func TestDomainNoRelabel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		seclabel func(q owner) string
	}{
		{"type-none", func(owner) string { return "<seclabel type='none' model='dac'/>" }},
		{"static-relabel-no", func(q owner) string {
			return fmt.Sprintf("<seclabel type='static' model='dac' relabel='no'><label>+%d:+%d</label></seclabel>", q.uid, q.gid)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			q := f.h.qemu.owner()
			alice, bob := f.h.alice.owner(), f.h.bob.owner()
			base := f.image("base.qcow2", "qcow2", "16M", "", owner{alice.uid, bob.gid}, 0o444)
			over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o666)
			raw := f.image("data.raw", "raw", "8M", "", owner{alice.uid, bob.gid}, 0o666)
			for _, p := range []string{base, over, raw} {
				tr := f.track(p, owner{})
				tr.running = tr.orig
			}
			name := domainPrefix + "norelabel-" + tc.name
			f.mustStart(domainSpec{Name: name, Seclabel: tc.seclabel(q), Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}})
			f.checkQEMURunsAs(name, q)
			f.check("running", true, name)
			f.destroy(name)
			f.check("after destroy", false, name)
		})
	}
}

// TestDiskNoRelabel: <seclabel relabel='no'/> on one disk's source leaves
// that file alone while the other disk is handled as usual.
func TestDiskNoRelabel(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	keep := f.image("keep.raw", "raw", "8M", "", owner{alice.uid, bob.gid}, 0o666)
	handled := f.image("handled.raw", "raw", "8M", "", bob, 0o600)
	tr := f.track(keep, owner{})
	tr.running = tr.orig
	f.track(handled, q)
	name := domainPrefix + "disk-norelabel"
	d := fileDisk("raw", keep, "vda")
	d.NoRelabel = true
	f.mustStart(domainSpec{Name: name, Disks: []disk{d, fileDisk("raw", handled, "vdb")}})
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}

// TestMissingDisk: prepare cannot succeed, so it must undo what it did for
// the other disks, and libvirt's error must name the missing path.
func TestMissingDisk(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", owner{alice.uid, bob.gid}, 0o400)
	over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", bob, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, owner{})
	}
	missing := filepath.Join(f.dir, "does-not-exist.raw")
	name := domainPrefix + "missing"
	out, err := f.start(domainSpec{Name: name, Disks: []disk{
		fileDisk("qcow2", over, "vda"),
		fileDisk("raw", raw, "vdb"),
		fileDisk("raw", missing, "vdc"),
	}})
	if err == nil {
		t.Errorf("virsh create with missing disk %s succeeded, want failure", missing)
		f.destroy(name)
	} else if !strings.Contains(out, missing) {
		t.Errorf("libvirt's error does not name the missing disk %s", missing)
		logBlock(t, "libvirt error", out)
	} else {
		logBlock(t, "libvirt error (as expected)", out)
	}
	if out, err := virsh(10*time.Second, "domstate", name); err == nil {
		t.Errorf("domain %s still exists after failed create: %s", name, out)
	}
	if _, err := os.Lstat(missing); err == nil {
		t.Errorf("%s exists after the failed start; nothing should create it", missing)
	}
	f.check("after failed create", false, name)
}

// TestForeignBacking: an overlay whose header names a base owned by
// someone else is refused (a guest that could rewrite the header must not
// get other users' files), nothing is chowned, and libvirt says why. The
// images lie in alice's own directory: a base in a directory only root can
// write is the admin's shared store, which the hook accepts from any owner.
func TestForeignBacking(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	dir := filepath.Join(f.dir, "alice")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("mkdir %s: %v", dir, err)
	}
	setOwner(t, dir, alice, 0o755)
	base := f.image("alice/bobs-base.qcow2", "qcow2", "16M", "", bob, 0o400)
	over := f.image("alice/overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("alice/data.raw", "raw", "8M", "", alice, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, owner{})
	}
	name := domainPrefix + "foreign-backing"
	out, err := f.start(domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}})
	if err == nil {
		t.Errorf("virsh create with a backing file owned by %s under an overlay owned by %s succeeded, want refusal", bobName, aliceName)
		f.check("running (should not be)", false, name)
		f.destroy(name)
	} else if !strings.Contains(out, base) {
		t.Errorf("libvirt's error does not name the refused backing file %s", base)
		logBlock(t, "libvirt error", out)
	} else {
		logBlock(t, "libvirt error (as expected)", out)
	}
	f.check("after refused create", false, name)
}

// concurrent: several VMs share one read-only base image; the base
// stays QEMU's while any of them runs and goes back only after the last.
func concurrent(t *testing.T) {
	alice, bob := e2e.alice.owner(), e2e.bob.owner()
	sharedBase(t, 6, "conc", owner{alice.uid, bob.gid}, 0o440, func(i int) owner {
		if i%2 == 1 {
			return owner{alice.uid, bob.gid}
		}
		return alice
	})
}

// Owners of the foreign shared base: an account that is neither root,
// QEMU, nor the owner of the overlays naming it (no account needs to exist
// for a uid to own a file).
var foreignBase = owner{1201, 2201}

// sharedBaseForeign: domains whose overlays belong to bob share a base that
// belongs to a third account, in a directory only root can write (the
// admin's template store): every one of them starts, not only the first,
// and every owner is back after the last stops.
func sharedBaseForeign(t *testing.T, n int) {
	bob := e2e.bob.owner()
	sharedBase(t, n, fmt.Sprintf("foreign%d", n), foreignBase, 0o600, func(int) owner { return bob })
}

// sharedBase starts n VMs at once, each on its own overlay (owned by
// overlayOwner(i), 0600) of one base (baseOwner, baseMode), then destroys
// half and the rest, checking owners at each step.
func sharedBase(t *testing.T, n int, tag string, baseOwner owner, baseMode os.FileMode, overlayOwner func(int) owner) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", baseOwner, baseMode)
	baseT := f.track(base, q)
	var names []string
	var overlays []*tracked
	for i := range n {
		p := f.image(fmt.Sprintf("vm%d.qcow2", i), "qcow2", "", base, overlayOwner(i), 0o600)
		overlays = append(overlays, f.track(p, q))
		names = append(names, fmt.Sprintf("%s%s-%d", domainPrefix, tag, i))
	}

	parallel := func(idx []int, do func(i int)) {
		var wg sync.WaitGroup
		for _, i := range idx {
			wg.Add(1)
			go func() {
				defer wg.Done()
				do(i)
			}()
		}
		wg.Wait()
	}
	var mu sync.Mutex
	var failed []string
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	parallel(all, func(i int) {
		out, err := f.start(domainSpec{Name: names[i], Disks: []disk{fileDisk("qcow2", overlays[i].path, "vda")}})
		if err != nil {
			mu.Lock()
			failed = append(failed, fmt.Sprintf("%s: %v: %s", names[i], err, out))
			mu.Unlock()
		}
	})
	if len(failed) > 0 {
		for _, s := range failed {
			t.Errorf("virsh create: %s", s)
		}
		f.h.diagnose(t, names...)
		t.FailNow()
	}
	f.check("all running", true, names...)

	destroy := func(idx []int) {
		parallel(idx, func(i int) {
			if out, err := virsh(time.Minute, "destroy", names[i]); err != nil {
				t.Errorf("virsh destroy %s: %v: %s", names[i], err, out)
			}
		})
		for _, i := range idx {
			f.waitGone(names[i])
		}
	}
	destroy(all[:n/2])
	// Half gone: the base is still in use by the others.
	ok := f.checkOne("half destroyed", baseT, q)
	for i, tr := range overlays {
		want := q
		if i < n/2 {
			want = tr.orig
		}
		ok = f.checkOne("half destroyed", tr, want) && ok
	}
	if !ok {
		f.h.diagnose(t, names...)
	}
	destroy(all[n/2:])
	f.check("all destroyed", false, names...)
}
