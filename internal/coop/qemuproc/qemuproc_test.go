package qemuproc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

const qemuUID, userUID = 64055, 64056

// TestOpenFiles runs real processes holding files open: libvirt's QEMU
// (a pid file in the run directory, QEMU's user), a user's program named
// qemu-system-x86_64 (no pid file: not libvirt's), and a pid file naming
// a process of another user (a stale file whose pid was reused).
func TestOpenFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run processes as other users")
	}
	dir, run := t.TempDir(), t.TempDir()
	if err := errors.Join(os.Chmod(filepath.Dir(dir), 0o755), os.Chmod(dir, 0o755)); err != nil {
		t.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(dir, "qemu-system-x86_64")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	start := func(bin, file string, uid uint32) *exec.Cmd {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		c := exec.Command(bin, "30")
		c.ExtraFiles = []*os.File{f}
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	files := map[string]string{}
	for _, n := range []string{"vm1.img", "victim.iso", "stale.img"} {
		files[n] = filepath.Join(dir, n)
		if err := os.WriteFile(files[n], nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pidFile := func(name string, c *exec.Cmd) {
		if err := os.WriteFile(filepath.Join(run, name+".pid"), []byte(strconv.Itoa(c.Process.Pid)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q := start(sleep, files["vm1.img"], qemuUID)
	pidFile("vm1", q)
	start(fake, files["victim.iso"], userUID)
	pidFile("stale", start(sleep, files["stale.img"], userUID))
	got, err := OpenFiles(run, "/proc", qemuUID)
	if err != nil {
		t.Fatal(err)
	}
	id := func(p string) owner.ID {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return owner.ID{Dev: st.Dev, Ino: st.Ino}
	}
	if p := got[id(files["vm1.img"])]; p.PID != q.Process.Pid || p.Domain != "vm1" {
		t.Errorf("OpenFiles()[vm1.img] = %+v, want pid %d of domain vm1", p, q.Process.Pid)
	}
	for _, n := range []string{"victim.iso", "stale.img"} {
		if p, ok := got[id(files[n])]; ok {
			t.Errorf("OpenFiles() lists %s (pid %d), held only by a process that is not libvirt's QEMU", n, p.PID)
		}
	}
	if got, err := OpenFiles(filepath.Join(run, "none"), "/proc"); err != nil || len(got) != 0 {
		t.Errorf("OpenFiles(missing run dir) = %v, %v; want none", got, err)
	}
}
