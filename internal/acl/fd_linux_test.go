package acl

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// Subject ids: numeric, no passwd entries needed.
const (
	qemuUID   = 4242
	qemuGID   = 4242
	otherGID  = 4300
	namedUser = 1000
	namedGrp  = 100
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: sets ACLs, chowns and switches credentials with setpriv")
	}
	for _, tool := range []string{"getfacl", "setfacl", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (packages acl, util-linux): %v", tool, err)
		}
	}
}

// fsDirs returns a fresh directory on each filesystem under test: the temp
// dir's filesystem and a tmpfs mounted for the test. Parents are opened
// up to 0755 so that unprivileged subjects can reach the test inodes and
// only the inode under test decides.
func fsDirs(t *testing.T) map[string]string {
	t.Helper()
	base := t.TempDir()
	for p := base; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dirs := map[string]string{"tempdir": filepath.Join(base, "disk")}
	if err := os.Mkdir(dirs["tempdir"], 0o755); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(base, "tmpfs")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "mode=0755"); err != nil {
		t.Logf("cannot mount tmpfs, testing the temp dir only: %v", err)
		return dirs
	}
	// Registered after t.TempDir, so it runs first; a mount left behind
	// makes the TempDir removal fail (EBUSY), which the test then reports.
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	dirs["tmpfs"] = mnt
	return dirs
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func getfacl(t *testing.T, p string) string { return run(t, "getfacl", "-n", "-p", p) }

// getfaclACL returns the ACL as getfacl reports it, ignoring its
// "#effective" annotations.
func getfaclACL(t *testing.T, p string) ACL {
	t.Helper()
	return mustText(t, run(t, "getfacl", "-n", "-p", "-E", "--omit-header", p))
}

func modeOf(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode
}

// openPath opens p the way the hook does: O_PATH, no following.
func openPath(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func fdMode(t *testing.T, fd int) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode
}

// asUser runs argv with the given credentials (no capabilities) and
// reports whether it exited 0. Exit status 1 means "denied"; anything
// else is a test failure.
func asUser(t *testing.T, uid, gid uint32, groups []uint32, argv ...string) bool {
	t.Helper()
	args := []string{"--reuid=" + strconv.Itoa(int(uid)), "--regid=" + strconv.Itoa(int(gid))}
	if len(groups) == 0 {
		args = append(args, "--clear-groups")
	} else {
		g := make([]string, len(groups))
		for i, x := range groups {
			g[i] = strconv.Itoa(int(x))
		}
		args = append(args, "--groups="+strings.Join(g, ","))
	}
	cmd := exec.Command("setpriv", append(args, argv...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false
	default:
		t.Fatalf("setpriv %s: %v\n%s", strings.Join(args, " "), err, out)
		return false
	}
}

// kernelAllows asks the kernel (access(2) via test(1)) whether the subject
// may want on p.
func kernelAllows(t *testing.T, p string, uid, gid uint32, groups []uint32, want Perm) bool {
	t.Helper()
	flag := map[Perm]string{Read: "-r", Write: "-w", Exec: "-x"}[want]
	return asUser(t, uid, gid, groups, "test", flag, p)
}

func TestGetMatchesGetfacl(t *testing.T) {
	requireRoot(t)
	specs := []struct {
		name string
		mode os.FileMode
		spec string // "" = no ACL
	}{
		{"no acl 0700", 0o700, ""},
		{"no acl 0751", 0o751, ""},
		{"named user", 0o750, "u::rwx,u:1000:r-x,g::r-x,m::r-x,o::---"},
		{"named users and groups", 0o750, "u::rwx,u:7:r--,u:1000:rwx,g::r-x,g:100:rw-,g:4300:--x,m::rw-,o::r--"},
		{"mask only", 0o750, "u::rwx,g::r-x,m::r--,o::---"},
	}
	for fsName, root := range fsDirs(t) {
		for i, s := range specs {
			t.Run(fsName+"/"+s.name, func(t *testing.T) {
				p := filepath.Join(root, fmt.Sprint("d", i))
				if err := os.Mkdir(p, s.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, s.mode); err != nil { // umask
					t.Fatal(err)
				}
				if s.spec != "" {
					run(t, "setfacl", "--set", s.spec, p)
				}
				fd := openPath(t, p)
				got, err := Get(fd, fdMode(t, fd))
				if err != nil {
					t.Fatalf("Get(%s): %v", p, err)
				}
				if diff := cmp.Diff(getfaclACL(t, p), got); diff != "" {
					t.Errorf("Get(%s) differs from getfacl (-getfacl +Get):\n%s", p, diff)
				}
				if got.Mode() != fdMode(t, fd)&0o777 {
					t.Errorf("Get(%s).Mode() = %o, st_mode %o", p, got.Mode(), fdMode(t, fd)&0o777)
				}
			})
		}
	}
}

func TestAddUserExecUndo(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name   string
		mode   os.FileMode // permission and special bits of the directory
		gid    int         // owning group
		spec   string      // initial ACL; "" = none
		groups []uint32    // supplementary groups of the subject
		before bool        // can the subject search the dir before?
		after  string      // ACL after AddUserExec, as getfacl shows it
		widen  bool        // Change.Widened non-empty
	}{
		{
			name:  "plain 0700",
			mode:  0o700,
			after: "u::rwx,u:4242:--x,g::---,m::--x,o::---",
		},
		{
			name:  "named entries and restrictive mask",
			mode:  0o750,
			spec:  "u::rwx,u:1000:r-x,g::r-x,g:100:rwx,m::r--,o::---",
			after: "u::rwx,u:1000:r-x,u:4242:--x,g::r-x,g:100:rwx,m::r-x,o::---",
			widen: true,
		},
		{
			name:   "group already grants x",
			mode:   0o750,
			gid:    otherGID,
			groups: []uint32{otherGID},
			before: true,
			after:  "u::rwx,u:4242:--x,g::r-x,m::r-x,o::---",
		},
		{
			name:  "uid has r--",
			mode:  0o700,
			spec:  "u::rwx,u:4242:r--,g::---,m::r--,o::---",
			after: "u::rwx,u:4242:r-x,g::---,m::r-x,o::---",
		},
		{
			name:  "setgid and sticky kept",
			mode:  0o700 | os.ModeSetgid | os.ModeSticky,
			after: "u::rwx,u:4242:--x,g::---,m::--x,o::---",
		},
		{
			name:   "already granted",
			mode:   0o700,
			spec:   "u::rwx,u:4242:--x,g::---,m::--x,o::---",
			before: true,
			after:  "u::rwx,u:4242:--x,g::---,m::--x,o::---",
		},
	}
	for fsName, root := range fsDirs(t) {
		for i, tt := range tests {
			t.Run(fsName+"/"+tt.name, func(t *testing.T) {
				dir := filepath.Join(root, fmt.Sprint("d", i))
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "child"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(dir, 0, tt.gid); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, tt.mode); err != nil {
					t.Fatal(err)
				}
				if tt.spec != "" {
					run(t, "setfacl", "--set", tt.spec, dir)
				}
				faclBefore, modeBefore := getfacl(t, dir), modeOf(t, dir)
				child := filepath.Join(dir, "child")
				canStat := func() bool { return asUser(t, qemuUID, qemuGID, tt.groups, "stat", child) }
				if got := canStat(); got != tt.before {
					t.Fatalf("before: uid %d can stat %s = %v, want %v", qemuUID, child, got, tt.before)
				}

				fd := openPath(t, dir)
				c, err := AddUserExec(fd, fdMode(t, fd), qemuUID)
				if err != nil {
					t.Fatalf("AddUserExec: %v", err)
				}
				if diff := cmp.Diff(mustText(t, tt.after), getfaclACL(t, dir)); diff != "" {
					t.Errorf("ACL after AddUserExec (-want +getfacl):\n%s", diff)
				}
				if got := len(c.Widened) > 0; got != tt.widen {
					t.Errorf("Change.Widened = %v, want non-empty %v", c.Widened, tt.widen)
				}
				if got := modeOf(t, dir) &^ 0o777; got != modeBefore&^0o777 {
					t.Errorf("non-permission mode bits after AddUserExec = %o, want %o", got, modeBefore&^0o777)
				}
				if !canStat() {
					t.Errorf("after AddUserExec: uid %d cannot stat %s", qemuUID, child)
				}
				if asUser(t, qemuUID, qemuGID, tt.groups, "sh", "-c", `ls -- "$1" >/dev/null 2>&1 || exit 1`, "sh", dir) && !tt.before && !strings.Contains(tt.after, "4242:r") {
					t.Errorf("after AddUserExec: uid %d can list %s, only search was granted", qemuUID, dir)
				}
				got, err := Get(fd, fdMode(t, fd))
				if err != nil {
					t.Fatal(err)
				}
				if !got.Allowed(0, uint32(tt.gid), qemuUID, append([]uint32{qemuGID}, tt.groups...), Exec) {
					t.Errorf("Allowed(x) after AddUserExec = false for %s", got)
				}

				// The Change goes through the journal as JSON.
				js, err := json.Marshal(c)
				if err != nil {
					t.Fatal(err)
				}
				var back Change
				if err := json.Unmarshal(js, &back); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(c, back); diff != "" {
					t.Errorf("Change JSON round trip %s (-want +got):\n%s", js, diff)
				}

				if err := Undo(fd, fdMode(t, fd), back); err != nil {
					t.Fatalf("Undo(%s): %v", js, err)
				}
				if got := getfacl(t, dir); got != faclBefore {
					t.Errorf("getfacl after Undo:\n%s\nwant:\n%s", got, faclBefore)
				}
				if got := modeOf(t, dir); got != modeBefore {
					t.Errorf("mode after Undo = %o, want %o", got, modeBefore)
				}
				raw, err := getRaw(fd)
				if err != nil {
					t.Fatal(err)
				}
				if tt.spec == "" && raw != nil {
					t.Errorf("xattr left behind after Undo: %x", raw)
				}
				if got := canStat(); got != tt.before {
					t.Errorf("after Undo: uid %d can stat %s = %v, want %v", qemuUID, child, got, tt.before)
				}
				// A second Undo (release replayed after a crash) changes nothing.
				if err := Undo(fd, fdMode(t, fd), back); err != nil {
					t.Fatalf("second Undo: %v", err)
				}
				if got := getfacl(t, dir); got != faclBefore {
					t.Errorf("getfacl after second Undo:\n%s\nwant:\n%s", got, faclBefore)
				}
			})
		}
	}
}

func TestModeMismatch(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	fd := openPath(t, dir)
	stale := fdMode(t, fd)
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := AddUserExec(fd, stale, qemuUID); !errors.Is(err, ErrModeMismatch) {
		t.Errorf("AddUserExec with stale mode = %v, want ErrModeMismatch", err)
	}
	if raw, err := getRaw(fd); err != nil || raw != nil {
		t.Errorf("xattr after refused AddUserExec = %x, %v; want none", raw, err)
	}
}

func TestClosedFD(t *testing.T) {
	requireRoot(t)
	fd, err := unix.Open(t.TempDir(), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if _, err := Get(fd, 0o700); err == nil {
		t.Errorf("Get on closed fd %d succeeded", fd)
	}
	if _, err := Get(-1, 0o700); !errors.Is(err, unix.EBADF) {
		t.Errorf("Get(-1) = %v, want EBADF", err)
	}
}

// TestNotSupported uses ramfs, which has no xattr support at all.
func TestNotSupported(t *testing.T) {
	requireRoot(t)
	mnt := t.TempDir()
	if err := unix.Mount("ramfs", mnt, "ramfs", 0, ""); err != nil {
		t.Skipf("cannot mount ramfs to get a filesystem without ACLs: %v", err)
	}
	// Registered after t.TempDir, so it runs first; a mount left behind
	// makes the TempDir removal fail (EBUSY), which the test then reports.
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	if err := os.Chmod(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	fd := openPath(t, mnt)
	mode := fdMode(t, fd)
	got, err := Get(fd, mode)
	if err != nil {
		t.Fatalf("Get on ramfs: %v", err)
	}
	if diff := cmp.Diff(FromMode(mode), got); diff != "" {
		t.Errorf("Get on ramfs (-want +got):\n%s", diff)
	}
	if _, err := AddUserExec(fd, mode, qemuUID); !errors.Is(err, ErrNotSupported) {
		t.Errorf("AddUserExec on ramfs = %v, want ErrNotSupported", err)
	}
	if err := Undo(fd, mode, Change{UID: qemuUID, AddedEntry: true, AddedPerm: Exec}); !errors.Is(err, ErrNotSupported) {
		t.Errorf("Undo on ramfs = %v, want ErrNotSupported", err)
	}
	if got := modeOf(t, mnt); got&0o7777 != 0o700 {
		t.Errorf("mode after refused AddUserExec = %o", got)
	}
}

// TestAllowedMatchesKernel compares Allowed with access(2) as seen by real
// unprivileged processes, over a matrix of ACLs, subjects and permissions.
func TestAllowedMatchesKernel(t *testing.T) {
	requireRoot(t)
	const owner, group = 4100, 4200
	acls := []struct {
		mode os.FileMode
		spec string
	}{
		{0o750, ""},
		{0o705, ""},
		{0o070, ""},
		{0o754, "u::rwx,u:4242:r--,g::r-x,m::r-x,o::r--"},
		{0o750, "u::rwx,u:4242:rwx,g::r-x,g:4300:-wx,m::r--,o::--x"},
		{0o750, "u::rwx,u:4242:---,g::r--,g:4300:--x,m::rwx,o::rwx"},
		{0o750, "u::rwx,u:4242:rwx,g::rwx,g:4300:rwx,m::---,o::r-x"}, // empty mask quirk
		{0o750, "u::r--,u:4100:rwx,g::---,g:4200:rw-,g:4300:r--,m::rw-,o::-w-"},
		{0o750, "u::rwx,g::--x,g:4300:r--,m::r-x,o::rwx"},
		{0o750, "u::rwx,g::---,m::rwx,o::r--"},
	}
	subjects := []struct {
		uid, gid uint32
		groups   []uint32
	}{
		{owner, 1, nil},
		{qemuUID, qemuGID, nil},
		{qemuUID, group, nil},
		{qemuUID, qemuGID, []uint32{otherGID}},
		{qemuUID, qemuGID, []uint32{group, otherGID}},
		{4999, 4999, nil},
		{4999, 4999, []uint32{otherGID}},
	}
	root := t.TempDir()
	for p := root; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, a := range acls {
		p := filepath.Join(root, fmt.Sprint("d", i))
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, owner, group); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, a.mode); err != nil {
			t.Fatal(err)
		}
		if a.spec != "" {
			run(t, "setfacl", "--set", a.spec, p)
		}
		fd := openPath(t, p)
		got, err := Get(fd, fdMode(t, fd))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range subjects {
			gids := append([]uint32{s.gid}, s.groups...)
			for _, want := range []Perm{Read, Write, Exec} {
				k := kernelAllows(t, p, s.uid, s.gid, s.groups, want)
				if ours := got.Allowed(owner, group, s.uid, gids, want); ours != k {
					t.Errorf("%s.Allowed(%d, %d, uid %d, gids %v, %s) = %v, kernel says %v", got, owner, group, s.uid, gids, want, ours, k)
				}
			}
		}
	}
}
