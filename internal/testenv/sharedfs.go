package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SharedMount is a shared filesystem mounted for a test.
type SharedMount struct {
	Name string
	Dir  string // where it is mounted
	// Declare is set when only qemu.conf's shared_filesystems makes it
	// count as shared (it stands for NFS, which the hook knows by type,
	// but its own type is a plain FUSE mount).
	Declare bool
}

// Need skips the test when a tool is missing, except under CI=true, where
// a missing tool would silently drop the test, so it fails instead.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// volumes numbers the volumes of this process.
var volumes atomic.Int64

// Gluster mounts a single-brick GlusterFS volume over this host's address
// at root/gluster (FUSE), with its brick in root/brick, starting glusterd
// first unless it runs. The volume, the mount and a glusterd it started
// are taken down when the test ends.
func Gluster(t testing.TB, root string) SharedMount {
	t.Helper()
	Need(t, "glusterd", "gluster", "mount.glusterfs")
	addr := strings.Fields(run(t, "hostname", "-I"))
	if len(addr) == 0 {
		t.Skip("no address other than loopback for a gluster brick")
	}
	if exec.Command("gluster", "--mode=script", "volume", "list").Run() != nil {
		// No glusterd answers (one that is a zombie nobody reaps does not).
		pidFile := filepath.Join(root, "glusterd.pid")
		run(t, "glusterd", "--log-file="+filepath.Join(root, "glusterd.log"), "-p", pidFile)
		t.Cleanup(func() {
			if b, err := os.ReadFile(pidFile); err == nil {
				var pid int
				if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 {
					_ = unix.Kill(pid, unix.SIGTERM)
					// The next test must not find it still going away.
					waitFor(10*time.Second, func() bool { return gone(pid) })
				}
			}
		})
		if !waitFor(10*time.Second, func() bool { return exec.Command("gluster", "--mode=script", "volume", "list").Run() == nil }) {
			t.Fatal("glusterd did not answer")
		}
	}
	vol := fmt.Sprintf("dachook%d-%d", os.Getpid(), volumes.Add(1))
	brick, mnt := filepath.Join(root, "brick"), filepath.Join(root, "gluster")
	for _, d := range []string{brick, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "gluster", "--mode=script", "volume", "create", vol, addr[0]+":"+brick, "force")
	t.Cleanup(func() {
		if out, err := exec.Command("gluster", "--mode=script", "volume", "delete", vol).CombinedOutput(); err != nil {
			t.Logf("gluster volume delete %s: %v: %s", vol, err, out)
		}
	})
	run(t, "gluster", "--mode=script", "volume", "start", vol)
	t.Cleanup(func() { _ = exec.Command("gluster", "--mode=script", "volume", "stop", vol, "force").Run() })
	run(t, "mount", "-t", "glusterfs", addr[0]+":/"+vol, mnt)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	return SharedMount{Name: "glusterfs", Dir: mnt}
}

// Bindfs mounts at root/name a FUSE view of root/name-back that stores no
// xattrs, as NFS stores no trusted ones; extra are more bindfs options
// (e.g. to squash root, or -r). It is unmounted when the test ends.
func Bindfs(t testing.TB, root, name string, extra ...string) SharedMount {
	t.Helper()
	Need(t, "bindfs")
	back, mnt := filepath.Join(root, name+"-back"), filepath.Join(root, name)
	for _, d := range []string{back, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"--xattr-none", "-o", "allow_other"}, extra...)
	run(t, "bindfs", append(args, back, mnt)...)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	if err := unix.Setxattr(mnt, "trusted.dachook-probe", []byte("1"), 0); err == nil {
		t.Fatalf("%s stores trusted xattrs; it must stand for NFS", mnt)
	}
	return SharedMount{Name: name, Dir: mnt, Declare: true}
}

func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// gone reports whether pid has exited (a zombie nobody reaps counts).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}
