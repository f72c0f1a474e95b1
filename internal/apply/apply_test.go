package apply

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cluster"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

const qemuUID, qemuGID = 64055, 994

type fixture struct {
	t     *testing.T
	root  string
	state string
	boot  string
	// orig is each file's owner before any hook ran.
	orig map[string][2]uint32
	// dirModes are the modes of the temp dirs before anything ran.
	dirModes map[string]uint32
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the hook's chowns are done for real")
	}
}

func newFixture(t *testing.T, files ...string) *fixture {
	t.Helper()
	needRoot(t)
	f := &fixture{t: t, root: t.TempDir(), boot: "boot-1", orig: map[string][2]uint32{}}
	f.state = filepath.Join(f.root, "state")
	f.dirModes = map[string]uint32{}
	for _, d := range []string{f.root, filepath.Dir(f.root)} {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			t.Fatal(err)
		}
		f.dirModes[d] = st.Mode & 0o777
	}
	for i, name := range files {
		p := filepath.Join(f.root, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		uid, gid := uint32(2000+i), uint32(3000+i)
		if err := os.Chown(p, int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
		f.orig[p] = [2]uint32{uid, gid}
	}
	return f
}

func (f *fixture) path(name string) string { return filepath.Join(f.root, name) }

// searchable opens the fixture's directories (0700 from t.TempDir) to
// everyone: a symlink's owner must be able to reach where it leads.
func (f *fixture) searchable() {
	f.t.Helper()
	for _, d := range []string{f.root, filepath.Dir(f.root)} {
		if err := os.Chmod(d, 0o755); err != nil {
			f.t.Fatal(err)
		}
		f.dirModes[d] = 0o755
	}
}

func (f *fixture) runner(fault func(int) error) *Runner {
	f.t.Helper()
	st, err := journal.Open(f.state, 2*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	st.BootID = f.boot
	log := logrus.New()
	log.SetOutput(io.Discard)
	return &Runner{Store: st, Log: log, Fault: fault}
}

// host is a Runner playing one host of a shared filesystem: its own state
// directory (state-ID) and host id, every file treated as shared.
func (f *fixture) host(id string) *Runner {
	f.state = filepath.Join(f.root, "state-"+id)
	r := f.runner(nil)
	r.SharedFS = func(*owner.Handle) bool { return true }
	r.HostID = id
	r.Cluster = cluster.Dirs{Dir: filepath.Join(f.root, "cluster")}
	return r
}

func (f *fixture) plan(dom string, uid, gid uint32, files ...string) *plan.Plan {
	f.t.Helper()
	d := &domain.Domain{Name: dom, Relabel: true}
	for i, name := range files {
		d.Resources = append(d.Resources, domain.Resource{Path: f.path(name), Kind: domain.KindDisk, From: fmt.Sprintf("disk[%d]", i), Expect: domain.TypeRegular})
	}
	p, err := plan.Build(d, plan.Env{RunAs: config.Identity{UID: uid, GID: gid}, MaxDepth: 8, ResolveLabel: config.ParseLabel, ParentACL: true})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(p.Close)
	return p
}

func (f *fixture) prepare(dom string, files ...string) error {
	return f.runner(nil).Prepare(f.plan(dom, qemuUID, qemuGID, files...))
}

func ownerOf(t *testing.T, p string) [2]uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return [2]uint32{st.Uid, st.Gid}
}

func (f *fixture) wantOwner(name string, want [2]uint32) {
	f.t.Helper()
	if got := ownerOf(f.t, f.path(name)); got != want {
		f.t.Errorf("owner of %s = %d:%d, want %d:%d", name, got[0], got[1], want[0], want[1])
	}
}

func (f *fixture) wantAllOriginal() {
	f.t.Helper()
	// t.TempDir's directories are 0700, so prepare granted QEMU search
	// with ACL entries; they must be gone again, mode unchanged.
	for _, d := range []string{f.root, filepath.Dir(f.root)} {
		if _, err := unix.Getxattr(d, "system.posix_acl_access", nil); !errors.Is(err, unix.ENODATA) {
			f.t.Errorf("%s still has an access ACL (getxattr: %v)", d, err)
		}
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			f.t.Fatal(err)
		}
		if st.Mode&0o777 != 0o700 && st.Mode&0o777 != f.dirModes[d] {
			f.t.Errorf("mode of %s = %o after restore", d, st.Mode&0o777)
		}
	}
	for p, want := range f.orig {
		if got := ownerOf(f.t, p); got != want {
			f.t.Errorf("owner of %s = %d:%d, want original %d:%d", filepath.Base(p), got[0], got[1], want[0], want[1])
		}
	}
}

func (f *fixture) wantEmptyState() {
	f.t.Helper()
	st, err := journal.LoadFile(filepath.Join(f.state, "state.json"))
	if err != nil {
		f.t.Fatal(err)
	}
	if all := st.All(); len(all) != 0 {
		f.t.Errorf("state still holds %d entries after everything was released, first %s", len(all), all[0].Path)
	}
}

var qemu = [2]uint32{qemuUID, qemuGID}

func TestPrepareRelease(t *testing.T) {
	f := newFixture(t, "a.img", "b.img")
	if err := f.prepare("vm1", "a.img", "b.img"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("a.img", qemu)
	f.wantOwner("b.img", qemu)
	if err := f.runner(nil).Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
	f.wantEmptyState()
	// A second release, and a release of a domain never prepared, are harmless.
	if err := f.runner(nil).Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	if err := f.runner(nil).Release("never", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
}

func TestSharedFileLastReleaseRestores(t *testing.T) {
	f := newFixture(t, "base.img", "a.img", "b.img")
	if err := f.prepare("vm1", "a.img", "base.img"); err != nil {
		t.Fatal(err)
	}
	if err := f.prepare("vm2", "b.img", "base.img"); err != nil {
		t.Fatal(err)
	}
	if err := f.runner(nil).Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("base.img", qemu)
	f.wantOwner("a.img", f.orig[f.path("a.img")])
	if err := f.runner(nil).Release("vm2", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
	f.wantEmptyState()
}

func TestConflictingOwnerNamesBothDomains(t *testing.T) {
	f := newFixture(t, "base.img")
	if err := f.prepare("vm1", "base.img"); err != nil {
		t.Fatal(err)
	}
	err := f.runner(nil).Prepare(f.plan("vm2", 5000, 5000, "base.img"))
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "vm1") || !strings.Contains(err.Error(), "vm2") {
		t.Fatalf("Prepare(vm2) = %v, want a conflict naming vm1 and vm2", err)
	}
	f.wantOwner("base.img", qemu)
	if err := f.runner(nil).Release("vm2", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("base.img", qemu)
	if err := f.runner(nil).Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
}

func TestPrepareFailureRollsBack(t *testing.T) {
	f := newFixture(t, "a.img", "b.img", "c.img")
	// An immutable file refuses chown even to root: the third change fails.
	if out, err := exec.Command("chattr", "+i", f.path("c.img")).CombinedOutput(); err != nil {
		t.Skipf("chattr +i not possible here: %s", out)
	}
	defer func() { _ = exec.Command("chattr", "-i", f.path("c.img")).Run() }()
	err := f.prepare("vm1", "a.img", "b.img", "c.img")
	if err == nil || !strings.Contains(err.Error(), f.path("c.img")) {
		t.Fatalf("Prepare = %v, want an error naming c.img", err)
	}
	f.wantAllOriginal()
	f.wantEmptyState()
}

// TestCrashAnywhere kills prepare and release after the k-th mutation, for
// every k, and checks that a later release (or restore) puts every original
// owner back and leaves no record behind.
func TestCrashAnywhere(t *testing.T) {
	files := []string{"a.img", "b.img", "c.img", "d.img"}
	kill := func(at int) func(int) error {
		return func(n int) error {
			if n == at {
				return fmt.Errorf("killed at mutation %d", n)
			}
			return nil
		}
	}
	for _, phase := range []string{"prepare", "release"} {
		for k := 1; ; k++ {
			f := newFixture(t, append([]string{"base.img"}, files...)...)
			// vm0 also holds base.img, so sharing is exercised.
			if err := f.prepare("vm0", "base.img"); err != nil {
				t.Fatal(err)
			}
			var err error
			if phase == "prepare" {
				err = f.runner(kill(k)).Prepare(f.plan("vm1", qemuUID, qemuGID, append(files, "base.img")...))
			} else {
				if perr := f.prepare("vm1", append(files, "base.img")...); perr != nil {
					t.Fatal(perr)
				}
				err = f.runner(kill(k)).Release("vm1", "-")
			}
			done := err == nil // k is past the last mutation: every point was tried
			if err != nil && !Killed(err) {
				t.Fatalf("%s killed at %d: %v", phase, k, err)
			}
			f.wantOwner("base.img", qemu) // vm0 still runs
			if err := f.runner(nil).Release("vm1", "-"); err != nil {
				t.Fatalf("%s killed at %d, release after: %v", phase, k, err)
			}
			f.wantOwner("base.img", qemu)
			if err := f.runner(nil).Release("vm0", "-"); err != nil {
				t.Fatal(err)
			}
			f.wantAllOriginal()
			f.wantEmptyState()
			if t.Failed() {
				t.Fatalf("%s killed after mutation %d left owners wrong", phase, k)
			}
			if done {
				t.Logf("%s: killed at each of %d mutation points, all restored", phase, k-1)
				break
			}
		}
	}
}

func TestRebootStaleRecords(t *testing.T) {
	f := newFixture(t, "a.img", "base.img")
	if err := f.prepare("vm1", "a.img", "base.img"); err != nil {
		t.Fatal(err)
	}
	// Host crash: no release. Next boot, another domain uses base.img.
	f.boot = "boot-2"
	if err := f.prepare("vm2", "base.img"); err != nil {
		t.Fatal(err)
	}
	if err := f.runner(nil).Release("vm2", "-"); err != nil {
		t.Fatal(err)
	}
	// base.img got its true original back, not the QEMU owner vm2 found.
	f.wantOwner("base.img", f.orig[f.path("base.img")])
	f.wantOwner("a.img", qemu) // stale until restored
	if err := f.runner(nil).Restore(Selector{Stale: true}); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
	f.wantEmptyState()
}

// TestReleaseFollowsRenamedFile: the image is renamed while the domain
// runs and a new file takes its name. Release gives the original owner
// back to the recorded inode, found by its file handle under its new name,
// and leaves the new file alone.
func TestReleaseFollowsRenamedFile(t *testing.T) {
	f := newFixture(t, "a.img")
	if err := f.prepare("vm1", "a.img"); err != nil {
		t.Fatal(err)
	}
	// The image is replaced by a new file (new inode) with the QEMU owner.
	p := f.path("a.img")
	if err := os.Rename(p, p+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, qemuUID, qemuGID); err != nil {
		t.Fatal(err)
	}
	if err := f.runner(nil).Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("a.img", qemu)
	f.wantOwner("a.img.old", f.orig[p])
	f.wantEmptyState()
}

func TestDamagedStateKeptAside(t *testing.T) {
	f := newFixture(t, "a.img")
	if err := f.prepare("vm1", "a.img"); err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(f.state, "state.json")
	b, _ := os.ReadFile(sp)
	if err := os.WriteFile(sp, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	err := f.runner(nil).Release("vm1", "-")
	if !errors.Is(err, journal.ErrDamaged) {
		t.Fatalf("Release with truncated state = %v, want ErrDamaged", err)
	}
	m, _ := filepath.Glob(sp + ".damaged-*")
	if len(m) != 1 {
		t.Fatalf("damaged state not kept aside: %v (error was %v)", m, err)
	}
	if !strings.Contains(err.Error(), m[0]) {
		t.Errorf("error %q does not say where the damaged state went", err)
	}
}

func TestLockTimeout(t *testing.T) {
	f := newFixture(t, "a.img")
	holder := f.runner(nil)
	if err := holder.Store.Lock(); err != nil {
		t.Fatal(err)
	}
	defer holder.Store.Unlock()
	r := f.runner(nil)
	r.Store.LockTimeout = 50 * time.Millisecond
	err := r.Prepare(f.plan("vm1", qemuUID, qemuGID, "a.img"))
	if !errors.Is(err, journal.ErrLockTimeout) {
		t.Fatalf("Prepare under a held lock = %v, want ErrLockTimeout", err)
	}
	f.wantAllOriginal()
}

func TestMigratedSharedFSNotRestored(t *testing.T) {
	f := newFixture(t, "a.img")
	if err := f.prepare("vm1", "a.img"); err != nil {
		t.Fatal(err)
	}
	// Mark the entry as on a shared filesystem, as an NFS mount would be.
	st, _ := journal.LoadFile(filepath.Join(f.state, "state.json"))
	for _, e := range st.All() {
		if e.Path == f.path("a.img") {
			e.Shared = true
		}
	}
	r := f.runner(nil)
	if err := r.Store.Save(st); err != nil {
		t.Fatal(err)
	}
	if err := r.Release("vm1", "migrated"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("a.img", qemu)
	f.wantEmptyState()
}

// TestLiveMigrationOnSharedStorage plays libvirt 9's live migration over a
// shared filesystem: the destination host prepares while the source still
// runs the domain, then the source releases (reason "-": libvirt before
// 10.5 does not say it migrated), then much later the destination releases.
// The destination must record the true original, the source must leave the
// file to the destination, and the last release gives the original back.
func TestLiveMigrationOnSharedStorage(t *testing.T) {
	f := newFixture(t, "shared.img")
	dstState := filepath.Join(f.root, "state-dst")
	if err := f.host("src").Prepare(f.plan("vm1", qemuUID, qemuGID, "shared.img")); err != nil {
		t.Fatal(err)
	}
	if err := f.host("dst").Prepare(f.plan("vm1", qemuUID, qemuGID, "shared.img")); err != nil {
		t.Fatal(err)
	}
	st, _ := journal.LoadFile(filepath.Join(dstState, "state.json"))
	for _, e := range st.All() {
		if e.Path == f.path("shared.img") && (e.UID != f.orig[e.Path][0] || e.GID != f.orig[e.Path][1]) {
			t.Errorf("destination recorded %d:%d as original, want %v", e.UID, e.GID, f.orig[e.Path])
		}
	}
	if err := f.host("src").Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("shared.img", qemu) // the destination's QEMU uses it
	if err := f.host("dst").Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
	if _, err := unix.Getxattr(f.path("shared.img"), OwnerXattr, nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("owner mark still on the file after the last release: %v", err)
	}
}

// TestUpgradeFromOwnerMark: a host of an earlier version runs the domain
// and says so only in its owner mark; the file is QEMU's. An upgraded
// destination takes the true original from the mark, and its release
// leaves the file to the host the mark names, keeping the original in the
// cluster record.
func TestUpgradeFromOwnerMark(t *testing.T) {
	f := newFixture(t, "held.img")
	held := f.path("held.img")
	o := f.orig[held]
	if err := unix.Setxattr(held, OwnerXattr, []byte(fmt.Sprintf("%d:%d hosts=old/boot", o[0], o[1])), 0); err != nil {
		t.Skipf("no trusted xattrs here: %v", err)
	}
	if err := os.Chown(held, qemuUID, qemuGID); err != nil {
		t.Fatal(err)
	}
	if err := f.host("dst").Prepare(f.plan("vm1", qemuUID, qemuGID, "held.img")); err != nil {
		t.Fatal(err)
	}
	if rec := f.record("held.img"); rec == nil || rec.UID != o[0] || rec.GID != o[1] {
		t.Fatalf("cluster record after the destination's prepare = %+v, want original %v", rec, o)
	}
	if err := f.host("dst").Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("held.img", qemu) // the old host's QEMU still uses it
	if rec := f.record("held.img"); rec == nil || rec.UID != o[0] || len(rec.Holders) != 0 {
		t.Fatalf("cluster record after the destination's release = %+v, want the original kept, no holders", rec)
	}
}

// record reads the cluster record of a fixture file.
func (f *fixture) record(name string) *cluster.Record {
	f.t.Helper()
	sp, err := cluster.Open(filepath.Join(f.root, "cluster"), time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	defer sp.Close()
	rec, err := sp.Get(f.path(name))
	if err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// TestMigrationToAnotherOwner: the destination runs QEMU as another uid
// than the source (another distribution, or another static label): it is
// a conflict while the source holds the file, and the original survives.
func TestMigrationToAnotherOwner(t *testing.T) {
	f := newFixture(t, "shared.img")
	if err := f.host("src").Prepare(f.plan("vm1", qemuUID, qemuGID, "shared.img")); err != nil {
		t.Fatal(err)
	}
	if err := f.host("dst").Prepare(f.plan("vm1", 5000, 5000, "shared.img")); !errors.Is(err, ErrConflict) {
		t.Fatalf("destination with another QEMU uid = %v, want a conflict", err)
	}
	if err := f.host("src").Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
}

func TestParseMark(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"1000:1001", "1000:1001", true},
		{"1000:1001 hosts=a/b,c/d", "1000:1001 hosts=a/b,c/d", true},
		{"4294967295:0", "4294967295:0", true},
		{"4294967296:0", "", false},
		{"-1:0", "", false},
		{"1000", "", false},
		{"1:2 hosts=", "1:2", true},
		{"1:2 hosts=a,,b", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		m, ok := parseMark([]byte(tc.in))
		if ok != tc.ok || (ok && m.String() != tc.want) {
			t.Errorf("parseMark(%q) = %q, %v; want %q, %v", tc.in, m.String(), ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseMark(f *testing.F) {
	for _, s := range []string{"1000:1001", "1:2 hosts=a/b,c/d", "x", "1:2 hosts=,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, ok := parseMark([]byte(s))
		if !ok {
			return
		}
		if len(m.Hosts) > maxMarkHosts {
			t.Fatalf("parseMark(%q) kept %d hosts", s, len(m.Hosts))
		}
		again, ok := parseMark([]byte(m.String()))
		if !ok || again.String() != m.String() {
			t.Fatalf("parseMark(%q) does not round-trip: %q", s, m.String())
		}
	})
}

// TestPrepareTwiceWithAnotherOwner: a domain prepared again (no release in
// between) with another target keeps the first original owner.
func TestPrepareTwiceWithAnotherOwner(t *testing.T) {
	f := newFixture(t, "a.img")
	if err := f.prepare("vm1", "a.img"); err != nil {
		t.Fatal(err)
	}
	if err := f.runner(nil).Prepare(f.plan("vm1", 5000, 5001, "a.img")); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("a.img", [2]uint32{5000, 5001})
	if err := f.runner(nil).Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
	f.wantEmptyState()
}

// TestStaleRecordYieldsToAdminChange: after a crash the admin gives a file
// a new owner; a later prepare and release must come back to the admin's
// owner, not to the stale record's.
func TestStaleRecordYieldsToAdminChange(t *testing.T) {
	f := newFixture(t, "a.img")
	if err := f.prepare("vm1", "a.img"); err != nil {
		t.Fatal(err)
	}
	f.boot = "boot-2"
	p := f.path("a.img")
	if err := os.Chown(p, 6000, 6001); err != nil {
		t.Fatal(err)
	}
	if err := f.prepare("vm1", "a.img"); err != nil {
		t.Fatal(err)
	}
	if err := f.runner(nil).Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("a.img", [2]uint32{6000, 6001})
	f.wantEmptyState()
}

// TestSearchGrantsForTwoUIDs: two domains running as different uids need
// the same 0700 directory. Releasing the first must leave the second able
// to search it, and after both the directory's ACL is exactly as before.
func TestSearchGrantsForTwoUIDs(t *testing.T) {
	for _, order := range [][2]string{{"vm1", "vm2"}, {"vm2", "vm1"}} {
		f := newFixture(t, "a.img", "b.img")
		if err := f.runner(nil).Prepare(f.plan("vm1", qemuUID, qemuGID, "a.img")); err != nil {
			t.Fatal(err)
		}
		if err := f.runner(nil).Prepare(f.plan("vm2", 5000, 5000, "b.img")); err != nil {
			t.Fatal(err)
		}
		if err := f.runner(nil).Release(order[0], "-"); err != nil {
			t.Fatal(err)
		}
		uid := uint32(5000)
		if order[0] == "vm2" {
			uid = qemuUID
		}
		h, err := owner.Open(f.root)
		if err != nil {
			t.Fatal(err)
		}
		a, err := acl.Get(h.Fd(), h.Stat.Mode)
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !a.Allowed(h.Stat.Uid, h.Stat.Gid, uid, []uint32{uid}, acl.Exec) {
			t.Errorf("after releasing %s first, uid %d can no longer search %s (ACL %s)", order[0], uid, f.root, a)
		}
		if err := f.runner(nil).Release(order[1], "-"); err != nil {
			t.Fatal(err)
		}
		f.wantAllOriginal()
		f.wantEmptyState()
	}
}

// TestSharedFileThroughOwnersSymlink: alice's symlink to her own base image
// keeps working for a second domain after the first gave the image to
// QEMU (the journal knows alice owned it), while bob's symlink to the same
// image is refused.
func TestSharedFileThroughOwnersSymlink(t *testing.T) {
	f := newFixture(t, "base.img")
	f.searchable()
	alice := f.orig[f.path("base.img")][0]
	link := func(name string, uid uint32) {
		if err := os.Symlink("base.img", f.path(name)); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(f.path(name), int(uid), int(uid)); err != nil {
			t.Fatal(err)
		}
	}
	link("alice-link.img", alice)
	link("bob-link.img", 7777)
	if err := f.prepare("vm1", "alice-link.img"); err != nil {
		t.Fatal(err)
	}
	if err := f.prepare("vm2", "alice-link.img"); err != nil {
		t.Fatalf("second domain through the owner's symlink: %v", err)
	}
	err := f.prepare("vm3", "bob-link.img")
	if !errors.Is(err, owner.ErrRefused) || !strings.Contains(err.Error(), "uid 7777") {
		t.Fatalf("domain through another user's symlink = %v, want a refusal naming uid 7777", err)
	}
	for _, d := range []string{"vm3", "vm2", "vm1"} {
		if err := f.runner(nil).Release(d, "-"); err != nil {
			t.Fatal(err)
		}
	}
	f.wantAllOriginal()
	f.wantEmptyState()
}

// TestMigrationThroughOwnersSymlink: the domain names its image through its
// owner's symlink; the destination finds the file owned by QEMU and must
// still accept the link (the mark says who owned the file).
func TestMigrationThroughOwnersSymlink(t *testing.T) {
	f := newFixture(t, "shared.img")
	f.searchable()
	alice := f.orig[f.path("shared.img")][0]
	if err := os.Symlink("shared.img", f.path("link.img")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(f.path("link.img"), int(alice), int(alice)); err != nil {
		t.Fatal(err)
	}
	if err := f.host("src").Prepare(f.plan("vm1", qemuUID, qemuGID, "link.img")); err != nil {
		t.Fatal(err)
	}
	if err := f.host("dst").Prepare(f.plan("vm1", qemuUID, qemuGID, "link.img")); err != nil {
		t.Fatalf("destination through the owner's symlink: %v", err)
	}
	if err := f.host("src").Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("shared.img", qemu)
	if err := f.host("dst").Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantAllOriginal()
}
