//go:build e2e

package e2e

// `reclaim` on a host that ran with libvirt's own DAC driver alone: the
// hook in dry_run (it only logs), libvirt labels with remember_owner = 1,
// and after the domain stops the read-only medium it left to QEMU goes
// back. libvirt remembers no owner for read-only media, and the owner of
// its directory (a user's own image directory here) is only a guess, so
// reclaim gives it to root:root and names the --owner that gives it to
// that user.

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReclaimAfterLibvirtDAC(t *testing.T) {
	f := newFixture(t)
	h := f.h
	t.Cleanup(func() {
		if err := h.host.switchMode(strictMode, false); err != nil {
			t.Errorf("put the host back to strict mode: %v", err)
		}
	})
	if err := h.host.switchMode(coopRemember, true); err != nil {
		t.Fatalf("switch the host to libvirt's driver alone: %v", err)
	}
	alice, q := h.alice.owner(), h.qemu.owner()
	vms := filepath.Join(f.dir, "vms")
	if err := os.Mkdir(vms, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(vms, alice.uid, alice.gid); err != nil {
		t.Fatal(err)
	}
	boot := f.image("vms/boot.raw", "raw", "8M", "", alice, 0o600)
	iso := f.image("vms/cd.iso", "raw", "1M", "", alice, 0o600)
	name := domainPrefix + "reclaim"
	f.mustStart(domainSpec{Name: name, Disks: []disk{
		fileDisk("raw", boot, "vda"),
		{Type: "file", Device: "cdrom", Format: "raw", Source: iso, Target: "hdc", Bus: "ide", ReadOnly: true},
	}})
	f.destroy(name)
	owned := func(p string) owner {
		t.Helper()
		o, _, _, err := statOwner(p)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if got := owned(iso); got != q {
		t.Fatalf("libvirt left cd.iso %s after destroy, want QEMU's %s (its known gap): nothing to reclaim", got, q)
	}
	if got := owned(boot); got != alice {
		t.Fatalf("libvirt left boot.raw %s after destroy, want %s (it restores read-write disks)", got, alice)
	}

	out, err := hookCmd("reclaim", "--dry-run", vms)
	if err != nil {
		t.Fatalf("reclaim --dry-run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "cd.iso") || owned(iso) != q {
		t.Errorf("reclaim --dry-run: want cd.iso named and left QEMU's (now %s); output:\n%s", owned(iso), out)
	}

	out, err = hookCmd("reclaim", vms)
	if err != nil {
		t.Fatalf("reclaim: %v\n%s", err, out)
	}
	t.Logf("reclaim:\n%s", out)
	for p, want := range map[string]owner{iso: {}, boot: alice} {
		if got := owned(p); got != want {
			t.Errorf("after reclaim %s is %s, want %s", p, got, want)
		}
	}
	if !strings.Contains(out, "no record of its owner") || !strings.Contains(out, "reclaim --owner") {
		t.Errorf("reclaim did not say why cd.iso went to root:root and how to give it to its directory's owner:\n%s", out)
	}
	if _, err := unix.Getxattr(iso, "trusted.libvirt.security.dac", nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("cd.iso carries a libvirt label after reclaim (%v)", err)
	}
}
