package cluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: record directories must be root's")
	}
}

func open(t *testing.T, dir string) *Space {
	t.Helper()
	sp, err := Open(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Close)
	return sp
}

func TestPutGetRemove(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "records")
	sp := open(t, dir)
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("record directory %s: mode %v, %v; want 0700", dir, fi.Mode(), err)
	}
	if r, err := sp.Get("/images/a.qcow2"); r != nil || err != nil {
		t.Fatalf("Get before Put = %+v, %v; want nil, nil", r, err)
	}
	want := &Record{Path: "/images/a.qcow2", Ino: 42, UID: 1201, GID: 2201, TargetUID: 64055, TargetGID: 64055,
		Holders: []Holder{{Host: "a", Boot: "b1", Domain: "vm"}}}
	if err := sp.Put(want); err != nil {
		t.Fatal(err)
	}
	got, err := sp.Get("/images/a.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get after Put (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(dir, Key(want.Path))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record file: %v, %v; want mode 0600", fi, err)
	}
	recs, errs := sp.List()
	if len(recs) != 1 || len(errs) != 0 {
		t.Errorf("List = %d records, errors %v; want 1, none", len(recs), errs)
	}
	if err := sp.Remove(want.Path); err != nil {
		t.Fatal(err)
	}
	if r, err := sp.Get(want.Path); r != nil || err != nil {
		t.Errorf("Get after Remove = %+v, %v; want nil, nil", r, err)
	}
}

// TestUntrusted: a record directory or record anyone but root could have
// written is refused, never read.
func TestUntrusted(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"directory group-readable", func(t *testing.T, dir string) { must(t, os.Mkdir(dir, 0o750)) }},
		{"directory of a user", func(t *testing.T, dir string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chown(dir, 1000, 1000))
		}},
		{"directory a symlink", func(t *testing.T, dir string) {
			target := dir + ".real"
			must(t, os.Mkdir(target, 0o700))
			must(t, os.Symlink(target, dir))
		}},
		{"lock file of a user", func(t *testing.T, dir string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.WriteFile(filepath.Join(dir, lockName), nil, 0o600))
			must(t, os.Chown(filepath.Join(dir, lockName), 1000, 1000))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "records")
			tc.setup(t, dir)
			sp, err := Open(dir, time.Second)
			if !errors.Is(err, ErrUntrusted) {
				if sp != nil {
					sp.Close()
				}
				t.Fatalf("Open(%s) = %v, want ErrUntrusted", tc.name, err)
			}
		})
	}
	t.Run("record of a user", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "records")
		sp := open(t, dir)
		r := &Record{Path: "/images/a", Ino: 1, Holders: []Holder{{"h", "b", "d"}}}
		must(t, sp.Put(r))
		must(t, os.Chown(filepath.Join(dir, Key(r.Path)), 64055, 64055))
		if _, err := sp.Get(r.Path); !errors.Is(err, ErrUntrusted) || !errors.Is(err, ErrDamaged) {
			t.Fatalf("Get of a record QEMU's user owns = %v, want ErrDamaged and ErrUntrusted", err)
		}
	})
}

// TestDamageStaysLocal: a record that cannot be read is reported, the
// others are still listed.
func TestDamageStaysLocal(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "records")
	sp := open(t, dir)
	good := &Record{Path: "/images/good", Ino: 1}
	must(t, sp.Put(good))
	must(t, os.WriteFile(filepath.Join(dir, Key("/images/bad")), []byte(`{"version":1,"path":`), 0o600))
	if _, err := sp.Get("/images/bad"); !errors.Is(err, ErrDamaged) {
		t.Errorf("Get of a truncated record = %v, want ErrDamaged", err)
	}
	recs, errs := sp.List()
	if len(recs) != 1 || recs[0].Path != good.Path || len(errs) != 1 || !errors.Is(errs[0], ErrDamaged) {
		t.Errorf("List = %v, %v; want the good record and one ErrDamaged", recs, errs)
	}
}

// TestLockExcludesAnotherProcess: while another process holds a record
// directory, Open waits and then gives up with ErrLockTimeout; once it
// lets go, Open succeeds.
func TestLockExcludesAnotherProcess(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "records")
	open(t, dir).Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	cmd.Env = append(os.Environ(), "CLUSTER_HOLD_LOCK="+dir)
	stdin, err := cmd.StdinPipe()
	must(t, err)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf), "locked") {
		t.Fatalf("helper: %q, %v", buf, err)
	}
	if sp, err := Open(dir, 0); !errors.Is(err, ErrLockTimeout) {
		if sp != nil {
			sp.Close()
		}
		t.Fatalf("Open while another process holds the lock = %v, want ErrLockTimeout", err)
	}
	stdin.Close()
	must(t, cmd.Wait())
	open(t, dir)
}

// TestHelperHoldLock is the other process of TestLockExcludesAnotherProcess.
func TestHelperHoldLock(t *testing.T) {
	dir := os.Getenv("CLUSTER_HOLD_LOCK")
	if dir == "" {
		t.Skip("helper process only")
	}
	sp, err := Open(dir, time.Second)
	must(t, err)
	_, _ = os.Stdout.WriteString("locked\n")
	b := make([]byte, 1)
	_, _ = os.Stdin.Read(b)
	sp.Close()
}

func TestDirs(t *testing.T) {
	d := Dirs{Shared: []string{"/srv/images", "/exp"}}
	for _, tc := range []struct {
		path   string
		shared bool
		dir    string
	}{
		{"/srv/images/a.qcow2", true, "/srv/images/" + DirName},
		{"/srv/images/sub/b.qcow2", true, "/srv/images/" + DirName},
		{"/srv/images", true, "/srv/images/" + DirName},
		{"/srv/imagesX/a", false, ""},
		{"/exp/x", true, "/exp/" + DirName},
		{"/var/lib/libvirt/images/a", false, ""},
	} {
		if got := d.InShared(tc.path); got != tc.shared {
			t.Errorf("InShared(%s) = %v, want %v", tc.path, got, tc.shared)
		}
		if tc.shared {
			if got := d.For(tc.path, 0); got != tc.dir {
				t.Errorf("For(%s) = %s, want %s", tc.path, got, tc.dir)
			}
		}
	}
	if got := (Dirs{Dir: "/shared/records", Shared: d.Shared}).For("/srv/images/a", 0); got != "/shared/records" {
		t.Errorf("For with cluster_dir = %s, want /shared/records", got)
	}
	// Without either, the top of the file's mount: here, t.TempDir's.
	tmp := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(tmp, "a", "b"), 0o755))
	fi, err := os.Stat(tmp)
	must(t, err)
	top := mountTop(filepath.Join(tmp, "a", "b"), devOf(fi))
	if !strings.HasPrefix(tmp, top) || top == filepath.Join(tmp, "a", "b") {
		t.Errorf("mountTop(%s/a/b) = %s, want a directory at or above %s", tmp, top, tmp)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func devOf(fi os.FileInfo) uint64 {
	return uint64(fi.Sys().(*syscall.Stat_t).Dev)
}

// TestMountPoints: a record directory is looked for at the top of every
// mount but the kernel's own, at the mount point as the kernel escapes it.
func TestMountPoints(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "mountinfo")
	table := `22 1 0:21 / /proc rw,nosuid - proc proc rw
23 1 0:22 / /sys rw - sysfs sysfs rw
24 1 8:1 / / rw - ext4 /dev/sda1 rw
61 24 0:41 / /srv/nfs\040images rw shared:5 - nfs4 srv:/images rw
not a mount line
`
	if err := os.WriteFile(mi, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	want := []string{"/" + DirName, "/srv/nfs images/" + DirName}
	if diff := cmp.Diff(want, mountPoints(mi)); diff != "" {
		t.Errorf("mountPoints (-want +got):\n%s", diff)
	}
	if got := mountPoints(filepath.Join(t.TempDir(), "none")); got != nil {
		t.Errorf("mountPoints(missing file) = %q, want none", got)
	}
}
