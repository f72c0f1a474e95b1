package qemuproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenFiles runs a real process named like QEMU that holds a file
// open, and one that is not QEMU holding another.
func TestOpenFiles(t *testing.T) {
	dir := t.TempDir()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	fake := filepath.Join(dir, "qemu-system-x86_64")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	held := filepath.Join(dir, "disk.img")
	other := filepath.Join(dir, "other.img")
	for _, p := range []string{held, other} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := func(bin, file string) *exec.Cmd {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		c := exec.Command(bin, "30")
		c.ExtraFiles = []*os.File{f}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	q := start(fake, held)
	start(sleep, other)
	got, err := OpenFiles("/proc")
	if err != nil {
		t.Fatal(err)
	}
	id := func(p string) ID {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return ID{st.Dev, st.Ino}
	}
	if p := got[id(held)]; p.PID != q.Process.Pid {
		t.Errorf("OpenFiles()[disk.img] = pid %d, want the fake QEMU %d", p.PID, q.Process.Pid)
	}
	if p, ok := got[id(other)]; ok {
		t.Errorf("OpenFiles() lists other.img (pid %d), held only by a process that is not QEMU", p.PID)
	}
}
