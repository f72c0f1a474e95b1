package apply

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cluster"
)

// Live migration over shared storage, as libvirt runs the hooks: the
// destination prepares while the source still runs the domain; on success
// the source releases (reason "-" before libvirt 10.5, "migrated" after);
// on failure the destination releases ("failed") and the source nothing.

// migrate plays one successful migration of vm from host src to dst.
func (f *fixture) migrate(vm, src, dst string, reason Reason, files ...string) {
	f.t.Helper()
	if err := f.host(dst).Prepare(f.plan(vm, qemuUID, qemuGID, files...)); err != nil {
		f.t.Fatalf("%s prepare on %s: %v", vm, dst, err)
	}
	for _, n := range files {
		f.wantOwner(n, qemu)
	}
	if err := f.host(src).Release(vm, reason); err != nil {
		f.t.Fatalf("%s release on %s: %v", vm, src, err)
	}
	for _, n := range files {
		f.wantOwner(n, qemu) // dst's QEMU runs on it
	}
}

// TestPingPong: A -> B -> A -> B with both release reasons, then the
// domain stops on B: the original comes back once, at the end, and no
// record or mark is left.
func TestPingPong(t *testing.T) {
	for _, reason := range []Reason{ReasonNone, ReasonMigrated} {
		t.Run(string(reason), func(t *testing.T) {
			f := newFixture(t, "disk.img")
			if err := f.host("A").Prepare(f.plan("vm", qemuUID, qemuGID, "disk.img")); err != nil {
				t.Fatal(err)
			}
			f.migrate("vm", "A", "B", reason, "disk.img")
			f.migrate("vm", "B", "A", reason, "disk.img")
			f.migrate("vm", "A", "B", reason, "disk.img")
			if rec := f.record("disk.img"); rec == nil || rec.UID != f.orig[f.path("disk.img")][0] || len(rec.Holders) != 1 || rec.Holders[0].Host != "B" {
				t.Fatalf("record after three migrations = %+v, want the original, held by B alone", rec)
			}
			if err := f.host("B").Release("vm", "-"); err != nil {
				t.Fatal(err)
			}
			f.wantAllOriginal()
			if rec := f.record("disk.img"); rec != nil {
				t.Errorf("record left after the last release: %+v", rec)
			}
			if _, err := unix.Getxattr(f.path("disk.img"), OwnerXattr, nil); !errors.Is(err, unix.ENODATA) {
				t.Errorf("an owner xattr was written (getxattr: %v): records must not depend on xattrs", err)
			}
		})
	}
}

// TestFailedMigrationLeavesSource: the destination's QEMU fails; libvirt
// releases there ("failed"). The source still runs: its files stay QEMU's,
// and its own release later gives the originals back.
func TestFailedMigrationLeavesSource(t *testing.T) {
	f := newFixture(t, "disk.img")
	if err := f.host("A").Prepare(f.plan("vm", qemuUID, qemuGID, "disk.img")); err != nil {
		t.Fatal(err)
	}
	if err := f.host("B").Prepare(f.plan("vm", qemuUID, qemuGID, "disk.img")); err != nil {
		t.Fatal(err)
	}
	if err := f.host("B").Release("vm", "failed"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("disk.img", qemu)
	if rec := f.record("disk.img"); rec == nil || len(rec.Holders) != 1 || rec.Holders[0].Host != "A" {
		t.Fatalf("record after the failed migration = %+v, want A alone", rec)
	}
	if err := f.host("A").Release("vm", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
}

// TestSharedBaseOnTwoHosts: two domains, each with its own overlay, share
// one base image and run on two hosts. Whichever stops first leaves the
// base to the other host; the base's original owner comes back with the
// last.
func TestSharedBaseOnTwoHosts(t *testing.T) {
	for _, first := range []string{"A", "B"} {
		t.Run("first stops on "+first, func(t *testing.T) {
			f := newFixture(t, "base.img", "a.img", "b.img")
			if err := f.host("A").Prepare(f.plan("va", qemuUID, qemuGID, "a.img", "base.img")); err != nil {
				t.Fatal(err)
			}
			if err := f.host("B").Prepare(f.plan("vb", qemuUID, qemuGID, "b.img", "base.img")); err != nil {
				t.Fatal(err)
			}
			if rec := f.record("base.img"); rec == nil || rec.UID != f.orig[f.path("base.img")][0] {
				t.Fatalf("base record = %+v, want its original %v", rec, f.orig[f.path("base.img")])
			}
			hosts := map[string]string{"A": "va", "B": "vb"}
			second := map[string]string{"A": "B", "B": "A"}[first]
			if err := f.host(first).Release(hosts[first], "-"); err != nil {
				t.Fatal(err)
			}
			f.wantOwner("base.img", qemu)
			if err := f.host(second).Release(hosts[second], "-"); err != nil {
				t.Fatal(err)
			}
			f.wantAllOriginal()
		})
	}
}

// TestHostDiesHoldingFiles: B dies while running the migrated domain. The
// survivor keeps the file with QEMU while B's hold stands; forget-host
// (ReleaseHolders for B) gives the original back.
func TestHostDiesHoldingFiles(t *testing.T) {
	f := newFixture(t, "disk.img")
	if err := f.host("A").Prepare(f.plan("vm", qemuUID, qemuGID, "disk.img")); err != nil {
		t.Fatal(err)
	}
	f.migrate("vm", "A", "B", "-", "disk.img")
	// B is gone: A's restore --stale and its own holds change nothing.
	a := f.host("A")
	if err := a.Restore(Selector{Stale: true}); err != nil {
		t.Fatal(err)
	}
	dirs := []string{filepath.Join(f.root, "cluster")}
	if err := a.ReleaseHolders(dirs, func(h cluster.Holder) bool { return h.Host == "A" }, "restore"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("disk.img", qemu)
	if err := f.host("A").ReleaseHolders(dirs, func(h cluster.Holder) bool { return h.Host == "B" }, "forget-host"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
	if rec := f.record("disk.img"); rec != nil {
		t.Errorf("record left after forget-host: %+v", rec)
	}
}

// TestRebootedHostDropsItsHolds: A crashes holding a file B also holds;
// after the reboot A's stale records are dropped, the file stays with B's
// QEMU; when B stops, the original comes back.
func TestRebootedHostDropsItsHolds(t *testing.T) {
	f := newFixture(t, "base.img", "a.img", "b.img")
	if err := f.host("A").Prepare(f.plan("va", qemuUID, qemuGID, "a.img", "base.img")); err != nil {
		t.Fatal(err)
	}
	if err := f.host("B").Prepare(f.plan("vb", qemuUID, qemuGID, "b.img", "base.img")); err != nil {
		t.Fatal(err)
	}
	f.boot = "boot-2" // A comes back; B runs on (same boot id in this test: other host)
	a := f.host("A")
	if err := a.Restore(Selector{Stale: true}); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("a.img", f.orig[f.path("a.img")])
	f.wantOwner("base.img", qemu)
	if rec := f.record("base.img"); rec == nil || len(rec.Holders) != 1 || rec.Holders[0].Host != "B" {
		t.Fatalf("base record after A's reboot = %+v, want B alone", rec)
	}
	if err := f.host("B").Release("vb", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
}

// TestMigrationDestinationAnotherOwner: a destination that runs QEMU as
// another user while the source holds the file is refused, naming the
// host; the source's file and record stay.
func TestMigrationDestinationAnotherOwner(t *testing.T) {
	f := newFixture(t, "disk.img")
	if err := f.host("A").Prepare(f.plan("vm", qemuUID, qemuGID, "disk.img")); err != nil {
		t.Fatal(err)
	}
	err := f.host("B").Prepare(f.plan("vm", 7777, 7777, "disk.img"))
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "host(s) A") || !strings.Contains(err.Error(), "forget-host") {
		t.Fatalf("Prepare as another owner = %v, want a conflict naming host A and forget-host", err)
	}
	f.wantOwner("disk.img", qemu)
	if err := f.host("A").Release("vm", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
}

// TestDamagedRecord: a record that cannot be read stops the prepare of its
// own file only, with the record's name; other files prepare as usual.
func TestDamagedRecord(t *testing.T) {
	f := newFixture(t, "bad.img", "good.img")
	dir := filepath.Join(f.root, "cluster")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, cluster.Key(f.path("bad.img"))), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := f.host("A").Prepare(f.plan("v1", qemuUID, qemuGID, "bad.img"))
	if !errors.Is(err, cluster.ErrDamaged) || !strings.Contains(err.Error(), cluster.Key(f.path("bad.img"))) {
		t.Fatalf("Prepare with a damaged record = %v, want ErrDamaged naming the record", err)
	}
	f.wantOwner("bad.img", f.orig[f.path("bad.img")])
	if err := f.host("A").Prepare(f.plan("v2", qemuUID, qemuGID, "good.img")); err != nil {
		t.Fatal(err)
	}
	if err := f.host("A").Release("v2", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
}

// TestUntrustedRecordDir: a record directory QEMU's user could write is
// refused; nothing changes.
func TestUntrustedRecordDir(t *testing.T) {
	f := newFixture(t, "disk.img")
	dir := filepath.Join(f.root, "cluster")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, qemuUID, qemuGID); err != nil {
		t.Fatal(err)
	}
	err := f.host("A").Prepare(f.plan("vm", qemuUID, qemuGID, "disk.img"))
	if !errors.Is(err, cluster.ErrUntrusted) {
		t.Fatalf("Prepare with a record directory of QEMU's user = %v, want ErrUntrusted", err)
	}
	f.wantAllOriginal()
}
