package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeRunning makes the fixture's libvirt run directory say that domain
// name runs (this test process stands in for its QEMU).
func (f *fixture) fakeRunning(name string) {
	f.t.Helper()
	dir := f.path("run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(setRunDir(dir))
	if err := os.WriteFile(filepath.Join(dir, name+".pid"), fmt.Appendf(nil, "%d\n", f.fakeQEMU()), 0o600); err != nil {
		f.t.Fatal(err)
	}
	status := "<domstatus state='running' reason='booted' pid='1'>\n  <monitor path='/x' type='unix'/>\n  " +
		f.domainXML(name, standardDisks) + "</domstatus>\n"
	if err := os.WriteFile(filepath.Join(dir, name+".xml"), []byte(status), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// fakeQEMU starts a process whose executable is named like QEMU (a copy
// of sleep) and returns its pid; it is killed when the test ends.
func (f *fixture) fakeQEMU() int {
	f.t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		f.t.Skip("no sleep binary to play QEMU")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		f.t.Fatal(err)
	}
	exe := f.path("qemu-system-x86_64")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		f.t.Fatal(err)
	}
	c := exec.Command(exe, "600")
	if err := c.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	return c.Process.Pid
}

// fakeQEMUHolding starts a process named like QEMU that holds rel open,
// as the QEMU of another domain holds a disk hot-plugged into it.
func (f *fixture) fakeQEMUHolding(rel string) *exec.Cmd {
	f.t.Helper()
	f.fakeQEMU() // makes the executable
	file, err := os.Open(f.path(rel))
	if err != nil {
		f.t.Fatal(err)
	}
	defer file.Close()
	c := exec.Command(f.path("qemu-system-x86_64"), "600")
	c.ExtraFiles = []*os.File{file}
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: qemuID, Gid: qemuID}}
	if err := c.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	// libvirt's QEMU: its run directory names it.
	dir := f.path("run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(setRunDir(dir))
	if err := os.WriteFile(filepath.Join(dir, "holder.pid"), fmt.Appendf(nil, "%d\n", c.Process.Pid), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return c
}

func TestGrantRevokeRelease(t *testing.T) {
	f := newFixture(t)
	f.write("img/hot.raw", "hot", imageUID)
	f.qcow2("img/hot.qcow2", "hotbase.raw", "raw", imageUID)
	f.write("img/hotbase.raw", "base", imageUID)
	f.fakeRunning("vm1")
	before := f.owners()

	res := run(noRead{t}, "grant", "vm1", f.path("img/hot.raw"))
	if res.code != 0 {
		t.Fatalf("grant = exit %d, stderr %q", res.code, res.stderr)
	}
	res = run(noRead{t}, "grant", "--format", "qcow2", "vm1", f.path("img/hot.qcow2"))
	if res.code != 0 {
		t.Fatalf("grant --format qcow2 = exit %d, stderr %q", res.code, res.stderr)
	}
	f.checkOwners(map[string]string{
		f.path("img/hot.raw"): qemuOwner, f.path("img/hot.qcow2"): qemuOwner, f.path("img/hotbase.raw"): qemuOwner,
	})
	res = run(noRead{t}, "revoke", "vm1", f.path("img/hot.raw"))
	if res.code != 0 {
		t.Fatalf("revoke = exit %d, stderr %q", res.code, res.stderr)
	}
	f.checkOwners(map[string]string{f.path("img/hot.raw"): before[f.path("img/hot.raw")], f.path("img/hot.qcow2"): qemuOwner})
	// The domain stops: its release gives back what grant gave.
	if res := run(noRead{t}, "vm1", "release", "end", "-"); res.code != 0 {
		t.Fatalf("release = exit %d, stderr %q", res.code, res.stderr)
	}
	f.checkOwners(before)
	f.checkNoEntries()
}

func TestGrantRefused(t *testing.T) {
	f := newFixture(t)
	f.write("img/hot.raw", "hot", imageUID)
	f.fakeRunning("vm1")
	before := f.owners()
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"not running", []string{"grant", "vm2", f.path("img/hot.raw")}, 1, "domain vm2 is not running"},
		{"protected", []string{"grant", "vm1", f.path("etc/secret")}, 1, "etc/secret"},
		{"missing", []string{"grant", "vm1", f.path("img/nope.raw")}, 3, "nope.raw"},
		{"directory", []string{"grant", "vm1", f.path("img")}, 3, "grant hands over disk images"},
		{"no path", []string{"grant", "vm1"}, 2, "usage"},
		{"bad name", []string{"grant", "../x", f.path("img/hot.raw")}, 2, "not a domain name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := run(noRead{t}, tc.args...)
			if res.code != tc.code || !strings.Contains(res.stderr, tc.contains) || strings.Count(res.stderr, "\n") != 1 || res.stdout != "" {
				t.Errorf("%v = exit %d, stdout %q, stderr %q; want exit %d, one stderr line containing %q", tc.args, res.code, res.stdout, res.stderr, tc.code, tc.contains)
			}
		})
	}
	f.checkOwners(before)
}
