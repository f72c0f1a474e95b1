//go:build e2e

package e2e

// The suite leaves the machine's libvirt as it was: its config files, its
// daemons and its domains. The state is read once before setup and
// compared while the suite's own daemons run (TestHostUntouched) and again
// after teardown (TestMain fails the run on a difference).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// machineDaemons are the libvirt daemons a machine may run, monolithic or
// modular.
var machineDaemons = []string{"libvirtd", "virtlogd", "virtlockd", "virtqemud", "virtproxyd", "virtnetworkd",
	"virtstoraged", "virtnodedevd", "virtsecretd", "virtnwfilterd", "virtinterfaced"}

// machineState is what the suite must not change on the machine.
type machineState struct {
	etc     map[string]string // /etc/libvirt: path -> type, owner, mode, checksum
	daemons []string          // "name pid starttime" of the machine's libvirt daemons
	domains string            // `virsh -c qemu:///system list --all`, when a daemon answers
	err     []string          // what could not be read
}

func readMachineState() machineState {
	var ms machineState
	ms.etc = map[string]string{}
	err := filepath.WalkDir("/etc/libvirt", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			v += " sha256:" + hex.EncodeToString(sum[:])
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			v += " -> " + target
		}
		ms.etc[p] = v
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		ms.err = append(ms.err, fmt.Sprintf("walk /etc/libvirt: %v", err))
	}
	ms.daemons = machineDaemonPids()
	if len(ms.daemons) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "virsh", "-c", "qemu:///system", "list", "--all").CombinedOutput()
		ms.domains = strings.TrimSpace(string(out))
		if err != nil {
			ms.domains += fmt.Sprintf(" (exit: %v)", err)
		}
	}
	return ms
}

// machineDaemonPids lists the libvirt daemons in the test's own mount
// namespace (the machine's: the suite's daemons run in others), with their
// start time so a reused pid does not pass for the same daemon.
func machineDaemonPids() []string {
	self, _ := os.Readlink("/proc/self/ns/mnt")
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !slices.Contains(machineDaemons, strings.TrimSpace(string(comm))) {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err != nil || ns != self || !alive(pid) {
			continue
		}
		out = append(out, fmt.Sprintf("%s pid %d started at tick %s", strings.TrimSpace(string(comm)), pid, startTime(pid)))
	}
	slices.Sort(out)
	return out
}

// startTime is field 22 of /proc/PID/stat, the process's start in clock
// ticks after boot.
func startTime(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "?"
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "?"
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "?"
	}
	return f[19]
}

// diff says, one line each, how now differs from ms ("" when it does not).
func (ms machineState) diff(now machineState) string {
	var d []string
	d = append(d, ms.err...)
	d = append(d, now.err...)
	for p, v := range ms.etc {
		switch nv, ok := now.etc[p]; {
		case !ok:
			d = append(d, fmt.Sprintf("%s: removed (was %s)", p, v))
		case nv != v:
			d = append(d, fmt.Sprintf("%s: %s, was %s", p, nv, v))
		}
	}
	for p, v := range now.etc {
		if _, ok := ms.etc[p]; !ok {
			d = append(d, fmt.Sprintf("%s: added (%s)", p, v))
		}
	}
	if !slices.Equal(ms.daemons, now.daemons) {
		d = append(d, fmt.Sprintf("libvirt daemons: %q, were %q", now.daemons, ms.daemons))
	}
	if ms.domains != now.domains {
		d = append(d, fmt.Sprintf("virsh -c qemu:///system list --all:\n%s\nwas:\n%s", now.domains, ms.domains))
	}
	slices.Sort(d)
	return strings.Join(d, "\n")
}

// TestHostUntouched: while the suite's daemons run, the machine's
// /etc/libvirt, libvirt daemons and domains are as they were before the
// run, and the suite's daemons are elsewhere: in a mount namespace of
// their own, with the hook under test at their hooks/qemu.
func TestHostUntouched(t *testing.T) {
	if e2e == nil {
		t.Skip("e2e harness not set up")
	}
	if diff := e2e.before.diff(readMachineState()); diff != "" {
		t.Errorf("the machine's libvirt changed:\n%s", diff)
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	hs := e2e.host
	for _, d := range []*daemonProc{hs.logd, hs.libvirtd} {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", d.cmd.Process.Pid))
		if err != nil || ns == self || ns != hs.nsID {
			t.Errorf("%s (pid %d) runs in mount namespace %q (%v), want the host's %s, not the machine's %s", d.name, d.cmd.Process.Pid, ns, err, hs.nsID, self)
		}
	}
	for _, d := range []*daemonProc{hs.logd, hs.libvirtd} {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
		for _, fd := range fds {
			target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", d.cmd.Process.Pid, fd.Name()))
			if slices.Contains(inheritedFiles, target) {
				t.Errorf("%s holds fd %s on %s, inherited from the test process", d.name, fd.Name(), target)
			}
		}
	}
	ours, err := os.ReadFile(hs.path(hookPath))
	if err != nil {
		t.Fatalf("read the host's hook: %v", err)
	}
	built, err := os.ReadFile(e2e.hookSrc)
	if err != nil {
		t.Fatalf("read the hook under test: %v", err)
	}
	if sha256.Sum256(ours) != sha256.Sum256(built) {
		t.Errorf("%s in host %s's namespace is not the hook under test %s", hookPath, hs.name, e2e.hookSrc)
	}
	ver, err := hs.virsh(10*time.Second, "version", "--daemon")
	if want := "Running against daemon: " + hs.lv.major; err != nil || !strings.Contains(ver, want) {
		t.Errorf("host %s: virsh version --daemon = %q, %v; want %q (LIBVIRT_DAC_HOOK_E2E_LIBVIRT=%s)", hs.name, ver, err, want, hs.lv.name)
	}
	out, err := hs.virsh(10*time.Second, "capabilities")
	if err != nil || !strings.Contains(out, "<uuid>"+hs.uuid+"</uuid>") {
		t.Errorf("host %s's capabilities do not carry its host_uuid %s (%v)", hs.name, hs.uuid, err)
	}
}
