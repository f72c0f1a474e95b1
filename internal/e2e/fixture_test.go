//go:build e2e

package e2e

// A fixture is one scenario's directory of images and the files whose
// owners it checks, plus the steps every scenario takes: create images with
// chosen owners and modes, start a domain from a domainSpec, destroy it and
// wait for libvirt's release, compare owners with what each phase expects.

import (
	"context"
	"fmt"
	"io/fs"
	"net"
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

// tracked is a host file whose owner the scenario checks.
type tracked struct {
	path    string
	orig    owner       // before the VM starts and after it is gone
	mode    fs.FileMode // never changes
	running owner       // while the VM runs
	// nsDomain, for a device node, is the domain whose QEMU opens it. In
	// cooperative mode libvirt labels device nodes only in QEMU's private
	// /dev, so the running owner is checked there, as QEMU sees it.
	nsDomain string
}

// fixture is one scenario's directory of images and the files it checks.
type fixture struct {
	t     *testing.T
	h     *harness
	host  *host // where the fixture's domains run: the default host
	dir   string
	files []*tracked
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if e2e == nil {
		t.Skip("e2e harness not set up")
	}
	dir := filepath.Join(e2e.workDir, strings.Trim(nameSanitizer.ReplaceAllString(t.Name(), "-"), "-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create fixture dir: %v", err)
	}
	// Mkdir honours the umask; QEMU must be able to traverse.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod fixture dir: %v", err)
	}
	return &fixture{t: t, h: e2e, host: e2e.host, dir: dir}
}

// image creates an image with qemu-img and gives it owner o and mode.
// backing, when set, is recorded only in the image header: the domain XML
// never names it, so the hook has to read the chain itself.
func (f *fixture) image(name, format, size, backing string, o owner, mode fs.FileMode) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	args := []string{"create", "-q", "-f", format}
	if backing != "" {
		args = append(args, "-F", "qcow2", "-b", backing)
	}
	args = append(args, p)
	if size != "" {
		args = append(args, size)
	}
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		f.t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
	setOwner(f.t, p, o, mode)
	return p
}

func setOwner(t *testing.T, p string, o owner, mode fs.FileMode) {
	t.Helper()
	if err := os.Chown(p, o.uid, o.gid); err != nil {
		t.Fatalf("chown %s: %v", p, err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatalf("chmod %s: %v", p, err)
	}
}

// track adds p to the checked files, recording its current owner and mode
// as the original; running is the owner expected while the VM runs.
func (f *fixture) track(p string, running owner) *tracked {
	f.t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		f.t.Fatalf("stat %s: %v", p, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	tr := &tracked{path: p, orig: owner{int(st.Uid), int(st.Gid)}, mode: modeBits(fi), running: running}
	f.files = append(f.files, tr)
	return tr
}

func modeBits(fi fs.FileInfo) fs.FileMode {
	return fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// loop attaches a loop device to a fresh backing file and gives the device
// node owner o and mode; cleanup detaches it and puts the node back as the
// system had it.
func (f *fixture) loop(o owner, mode fs.FileMode) string {
	f.t.Helper()
	backing := filepath.Join(f.dir, "loop-backing.img")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", backing, "8M").CombinedOutput(); err != nil {
		f.t.Fatalf("qemu-img create %s: %v: %s", backing, err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", backing).CombinedOutput()
	if err != nil {
		f.t.Fatalf("losetup -f --show %s: %v: %s", backing, err, out)
	}
	dev := strings.TrimSpace(string(out))
	fi, err := os.Stat(dev)
	if err != nil {
		f.t.Fatalf("stat %s: %v", dev, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	lr := loopRecord{Dev: dev, UID: int(st.Uid), GID: int(st.Gid), Mode: modeBits(fi)}
	if err := f.h.record(func(r *runRecord) { r.Loops = append(r.Loops, lr) }); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		if err := detachLoops(runRecord{WorkDir: f.h.workDir, Loops: []loopRecord{lr}}); err != nil {
			f.t.Error(err)
		}
		_ = f.h.record(func(r *runRecord) {
			r.Loops = slices.DeleteFunc(r.Loops, func(l loopRecord) bool { return l == lr })
		})
	})
	setOwner(f.t, dev, o, mode)
	return dev
}

// start writes spec's XML into the fixture dir and runs `virsh create`; it
// returns libvirt's output and error. A domain that did start is destroyed
// at cleanup if the test left it running.
func (f *fixture) start(spec domainSpec) (string, error) {
	f.t.Helper()
	_, out, err := f.create(spec)
	return out, err
}

func (f *fixture) create(spec domainSpec) (xmlPath, out string, err error) {
	f.t.Helper()
	suffix := ""
	if spec.Seclabel == noHookLabel {
		suffix = "-nohook"
	}
	xmlPath = f.writeXML(spec.Name+suffix, spec.xml())
	out, err = f.host.virsh(2*time.Minute, "create", xmlPath)
	if err == nil {
		f.t.Cleanup(func() { _, _ = f.host.virsh(time.Minute, "destroy", spec.Name) })
	}
	return xmlPath, out, err
}

// writeXML writes a domain XML into the fixture dir.
func (f *fixture) writeXML(name, xml string) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name+".xml")
	if err := os.WriteFile(p, []byte(xml), 0o644); err != nil {
		f.t.Fatalf("write %s: %v", p, err)
	}
	return p
}

// mustStart starts spec and stops the test, with libvirt's error, the
// hook's dry-run plan of the same XML and the logs, if it does not start.
func (f *fixture) mustStart(spec domainSpec) {
	f.t.Helper()
	xmlPath, out, err := f.create(spec)
	if err != nil {
		f.t.Errorf("virsh create %s: %v (libvirt's error below)", spec.Name, err)
		logBlock(f.t, "libvirt error", out)
		f.logPlan(xmlPath)
		f.host.diagnose(f.t, spec.Name)
		f.t.FailNow()
	}
}

func (f *fixture) destroy(name string) {
	f.t.Helper()
	if out, err := f.host.virsh(time.Minute, "destroy", name); err != nil {
		f.t.Errorf("virsh destroy %s: %v: %s", name, err, out)
	}
	f.waitGone(name)
}

// waitGone waits until libvirt no longer lists the transient domain; the
// release hook has run by then.
func (f *fixture) waitGone(name string) {
	f.t.Helper()
	var out string
	if !waitFor(30*time.Second, func() bool {
		var err error
		out, err = f.host.virsh(10*time.Second, "domstate", name)
		return err != nil || out == "shut off"
	}) {
		f.t.Fatalf("domain %s still %q after 30s", name, out)
	}
}

// check compares every tracked file with the owner expected in this phase
// and with its original mode; on any mismatch it prints the hook's log.
//
// After the VMs are gone (running false) it also walks the fixture dir:
// nothing may be left owned by QEMU's user or group that was not so before.
func (f *fixture) check(phase string, running bool, domains ...string) {
	f.t.Helper()
	ok := true
	for _, tr := range f.files {
		want := tr.orig
		if running {
			want = tr.running
		}
		if running && tr.nsDomain != "" && f.host.mode.cooperative() {
			if !f.checkAt(phase, tr, filepath.Join("/proc", strconv.Itoa(f.host.qemuPID(f.t, tr.nsDomain)), "root", tr.path), want) {
				ok = false
			}
			continue
		}
		if !f.checkOne(phase, tr, want) {
			ok = false
		}
	}
	if !running && !f.noStrayQEMU(phase) {
		ok = false
	}
	if !ok {
		f.host.diagnose(f.t, domains...)
	}
}

// noStrayQEMU walks the fixture dir and reports every entry owned by
// QEMU's uid or gid that is not a tracked file which was QEMU's before:
// files libvirt created or labelled during the run must not stay QEMU's.
func (f *fixture) noStrayQEMU(phase string) bool {
	f.t.Helper()
	q := f.h.qemu.owner()
	wasQEMU := map[string]bool{}
	for _, tr := range f.files {
		if tr.orig.uid == q.uid || tr.orig.gid == q.gid {
			wasQEMU[tr.path] = true
		}
	}
	ok := true
	err := filepath.WalkDir(f.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if (int(st.Uid) == q.uid || int(st.Gid) == q.gid) && !wasQEMU[p] {
			f.t.Errorf("%s: %s is %d:%d, left to QEMU (%s); it was not QEMU's before", phase, p, st.Uid, st.Gid, q)
			ok = false
		}
		return nil
	})
	if err != nil {
		f.t.Errorf("%s: walk %s: %v", phase, f.dir, err)
		return false
	}
	return ok
}

func (f *fixture) checkOne(phase string, tr *tracked, want owner) bool {
	f.t.Helper()
	return f.checkAt(phase, tr, tr.path, want)
}

// checkAt checks tr's owner and mode as seen at p (tr.path, or the same
// file through QEMU's mount namespace).
func (f *fixture) checkAt(phase string, tr *tracked, p string, want owner) bool {
	f.t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		f.t.Errorf("%s: stat %s: %v", phase, p, err)
		return false
	}
	st := fi.Sys().(*syscall.Stat_t)
	ok := true
	if got := (owner{int(st.Uid), int(st.Gid)}); got != want {
		f.t.Errorf("%s: owner of %s = %s, want %s (original %s)", phase, p, got, want, tr.orig)
		ok = false
	}
	if got := modeBits(fi); got != tr.mode {
		f.t.Errorf("%s: mode of %s = %v, want %v", phase, p, got, tr.mode)
		ok = false
	}
	return ok
}

// qemuPID reads the pid the default host's libvirt recorded for a
// running domain.
func qemuPID(t *testing.T, name string) int {
	t.Helper()
	return e2e.host.qemuPID(t, name)
}

// processOwner returns the real uid and gid of pid.
func processOwner(t *testing.T, pid int) owner {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of pid %d: %v", pid, err)
	}
	var o owner
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Uid:":
			o.uid, _ = strconv.Atoi(f[1])
		case "Gid:":
			o.gid, _ = strconv.Atoi(f[1])
		}
	}
	return o
}

func (f *fixture) checkQEMURunsAs(name string, want owner) {
	f.t.Helper()
	if got := processOwner(f.t, f.host.qemuPID(f.t, name)); got != want {
		f.t.Errorf("qemu of %s runs as %s, want %s", name, got, want)
	}
}

// noHookLabel makes the hook leave a domain alone while QEMU still runs as
// qemu.conf's user (TestDomainNoRelabel checks both).
const noHookLabel = "<seclabel type='none' model='dac'/>"

// logPlan shows what the installed hook makes of a domain XML.
func (f *fixture) logPlan(xmlPath string) {
	f.t.Helper()
	out, err := f.host.hookCommand(context.Background(), "plan", xmlPath).CombinedOutput()
	if err != nil {
		out = append(out, fmt.Sprintf("\n(exit: %v)", err)...)
	}
	logBlock(f.t, "libvirt-dac-hook plan "+xmlPath, string(out))
}

// mustFailWithoutHook starts spec with the hook switched off for the domain
// and requires libvirt to refuse it: the files are set up so that QEMU
// cannot use them unless the hook changes something. wantErr, when set, must
// appear in libvirt's error (it names what QEMU could not open).
func (f *fixture) mustFailWithoutHook(spec domainSpec, wantErr string) {
	f.t.Helper()
	spec.Seclabel = noHookLabel
	xmlPath, out, err := f.create(spec)
	if err == nil {
		f.t.Errorf("control: %s started with the hook switched off (%s); the setup does not keep QEMU out, so the scenario proves nothing", spec.Name, noHookLabel)
		f.logPlan(xmlPath)
		f.destroy(spec.Name)
		f.t.FailNow()
	}
	if wantErr != "" && !strings.Contains(out, wantErr) {
		f.t.Errorf("control: without the hook %s failed, but libvirt's error does not mention %q", spec.Name, wantErr)
		logBlock(f.t, "libvirt error", out)
	} else {
		logBlock(f.t, "control: libvirt error without the hook (as expected)", tail(out, 3))
	}
	if _, err := f.host.virsh(10*time.Second, "domstate", spec.Name); err == nil {
		f.t.Errorf("control: domain %s still exists after its failed start", spec.Name)
	}
	f.check("control start without the hook (failed as it should)", false, spec.Name)
}

// file writes data to name in the fixture dir with owner o and mode.
func (f *fixture) file(name string, data []byte, o owner, mode os.FileMode) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		f.t.Fatalf("write %s: %v", p, err)
	}
	setOwner(f.t, p, o, mode)
	return p
}

// listenUnix listens on a unix socket at p, owned by o with mode, and
// returns a channel that receives each accepted connection.
func (f *fixture) listenUnix(p string, o owner, mode os.FileMode) <-chan net.Conn {
	f.t.Helper()
	ln, err := net.Listen("unix", p)
	if err != nil {
		f.t.Fatalf("listen on %s: %v", p, err)
	}
	setOwner(f.t, p, o, mode)
	conns := make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	f.t.Cleanup(func() {
		ln.Close()
		<-done
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return conns
}

func statMode(p string) (fs.FileMode, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return modeBits(fi), nil
}
