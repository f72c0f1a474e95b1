//go:build e2e

package e2e

// Hot-plug and media change on a running domain (see TestLive). Disks are
// SCSI on a virtio-scsi controller: QEMU unplugs them without a guest OS,
// where a virtio disk's unplug waits for a guest that is not there.

import (
	"strings"
	"testing"
	"time"
)

// hotplugDomain is a running domain with a virtio-scsi controller, one
// boot disk and extra disks; it returns the boot disk.
func (f *fixture) hotplugDomain(name string, extra ...disk) *tracked {
	f.t.Helper()
	boot := f.rawImage("boot.raw", f.h.alice.owner())
	f.mustStart(domainSpec{Name: name, SCSI: true, Disks: append([]disk{fileDisk("raw", boot.path, "vda")}, extra...)})
	f.check("running", true, name)
	return boot
}

// attachDetach: attach-disk then detach-disk, read-write and read-only. In
// strict mode the disk is granted first (and attaching it without the
// grant must fail, or the scenario would prove nothing); detach leaves it
// granted until revoke. granted grants (and revokes) in cooperative mode
// too.
func attachDetach(t *testing.T, granted bool) {
	f := newFixture(t)
	granted = granted || f.strict()
	q := f.h.qemu.owner()
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	name := domainPrefix + "attach"
	boot := f.hotplugDomain(name)

	if granted {
		// grant for a domain that does not run: refused with one line,
		// nothing changed.
		p := f.rawImage("not-running.raw", alice)
		out, err := hookCmd("grant", domainPrefix+"not-running", p.path)
		if err == nil {
			t.Errorf("grant to a domain that is not running succeeded: %s", out)
		} else if out == "" || strings.Contains(out, "\n") {
			t.Errorf("grant to a domain that is not running: want one line of error, got %q", out)
		} else {
			t.Logf("grant to a domain that is not running (refused, as expected): %s", out)
		}
		f.want("after grant to a domain that is not running", p.orig, name, p)
	}

	for _, tc := range []struct {
		name, target string
		readonly     bool
		o            owner
	}{
		{"rw", "sda", false, alice},
		{"ro", "sdb", true, bob},
	} {
		tr := f.rawImage(tc.name+".raw", tc.o)
		attach := []string{"attach-disk", name, tr.path, tc.target, "--targetbus", "scsi", "--subdriver", "raw", "--live"}
		if tc.readonly {
			attach = append(attach, "--mode", "readonly")
		}
		if f.strict() {
			if tc.name == "rw" {
				out, err := virsh(time.Minute, attach...)
				if err == nil {
					t.Errorf("control: attach-disk %s without a grant succeeded in strict mode; QEMU should not be able to open a 0600 file of %s", tr.path, f.h.ownerName(tc.o))
					f.mustVirsh(name, "detach-disk", name, tc.target, "--live")
					f.waitNoTarget(name, tc.target)
				} else {
					logBlock(t, "control: attach-disk without grant (failed, as it should)", tail(out, 2))
				}
				f.want("after the control attach", tr.orig, name, tr)
			}
		}
		if granted {
			f.grant(name, tr.path)
			if f.strict() {
				f.want("granted", q, name, tr)
			}
		}
		f.mustVirsh(name, attach...)
		f.want(tc.name+" attached", q, name, tr, boot)
		f.observe(tc.name + " attached")
		f.mustVirsh(name, "detach-disk", name, tc.target, "--live")
		f.waitNoTarget(name, tc.target)
		f.observe(tc.name + " detached")
		if f.strict() {
			f.want(tc.name+" detached, still granted", q, name, tr)
		}
		if granted {
			f.revoke(name, tr.path)
			f.want(tc.name+" revoked", tr.orig, name, tr)
		}
	}
	f.want("after detaching", q, name, boot)
	f.destroy(name)
	f.check("after destroy", false, name)
}

// attachDestroy: a disk attached while the domain runs, never detached,
// goes back when the domain is destroyed.
func attachDestroy(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	name := domainPrefix + "attach-destroy"
	boot := f.hotplugDomain(name)
	rw := f.rawImage("rw.raw", f.h.bob.owner())
	ro := f.rawImage("ro.raw", f.h.alice.owner())
	if f.strict() {
		f.grant(name, rw.path, ro.path)
	}
	f.mustVirsh(name, "attach-disk", name, rw.path, "sda", "--targetbus", "scsi", "--subdriver", "raw", "--live")
	f.mustVirsh(name, "attach-disk", name, ro.path, "sdb", "--targetbus", "scsi", "--subdriver", "raw", "--live", "--mode", "readonly")
	f.want("attached", q, name, rw, ro, boot)
	f.observe("attached")
	f.destroy(name)
	f.observe("after destroy")
	f.check("after destroy", false, name)
}

// changeMedia: an empty SCSI cdrom gets an ISO, loses it, gets another.
// Strict mode grants each ISO first; granted does so in cooperative mode
// too.
func changeMedia(t *testing.T, granted bool) {
	f := newFixture(t)
	granted = granted || f.strict()
	q := f.h.qemu.owner()
	name := domainPrefix + "media"
	const target = "sdb"
	boot := f.hotplugDomain(name, disk{Device: "cdrom", Format: "raw", Target: target, Bus: "scsi", ReadOnly: true})
	iso1 := f.track(f.image("one.iso", "raw", "1M", "", f.h.alice.owner(), 0o600), q)
	iso2 := f.track(f.image("two.iso", "raw", "1M", "", f.h.bob.owner(), 0o600), q)

	if granted {
		f.grant(name, iso1.path)
	}
	f.mustVirsh(name, "change-media", name, target, iso1.path, "--insert", "--live")
	f.want("one.iso inserted", q, name, iso1, boot)
	f.observe("one.iso inserted")

	f.mustVirsh(name, "change-media", name, target, "--eject", "--live", "--force")
	f.observe("one.iso ejected")

	if granted {
		f.grant(name, iso2.path)
	}
	f.mustVirsh(name, "change-media", name, target, iso2.path, "--update", "--live", "--force")
	f.want("two.iso inserted", q, name, iso2, boot)
	f.observe("two.iso inserted")

	f.destroy(name)
	f.check("after destroy", false, name)
}
