package watch

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/remembered"
)

const (
	qemuUID, qemuGID = 64055, 64055
	userUID          = 1234
)

// childEnv makes the test binary, run again, play a fork of libvirt's
// daemon: it takes libvirt's worker thread name, chowns, says so, and
// lives until its stdin closes.
const childEnv = "WATCH_TEST_LIBVIRT_CHOWN"

// stormEnv makes the test binary, run again, a user creating files as
// fast as it can: "DIR:COUNT".
const stormEnv = "WATCH_TEST_CREATE_STORM"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(libvirtChild(spec))
	}
	if spec := os.Getenv(stormEnv); spec != "" {
		os.Exit(createStorm(spec))
	}
	os.Exit(m.Run())
}

func libvirtChild(spec string) int {
	f := strings.Split(spec, ":")
	uid, _ := strconv.Atoi(f[1])
	gid, _ := strconv.Atoi(f[2])
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(unsafePtr("rpc-libvirtd"))), 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Lchown(f[0], uid, gid); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("done")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

func createStorm(spec string) int {
	i := strings.LastIndexByte(spec, ':')
	n, _ := strconv.Atoi(spec[i+1:])
	for j := range n {
		fd, err := unix.Open(filepath.Join(spec[:i], fmt.Sprintf("f%06d", j)), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = unix.Close(fd)
	}
	return 0
}

// rig is a watcher of a temporary state directory whose "libvirt daemon"
// is this test process.
type rig struct {
	t     *testing.T
	state string
	dir   string
	gen   int64
	w     *Watcher
	// stop ends the watcher (once).
	stop func()
}

func newRig(t *testing.T, dir string) *rig {
	t.Helper()
	return newRigAt(t, "", dir)
}

// newRigAt starts a watcher of state ("" for a new one) following dir
// ("" for a new one).
func newRigAt(t *testing.T, state, dir string) *rig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("fanotify needs root: run the tests as root")
	}
	if state == "" {
		state = t.TempDir()
	}
	r := &rig{t: t, state: state, dir: dir}
	if r.dir == "" {
		r.dir = t.TempDir()
	}
	pidFile := filepath.Join(t.TempDir(), "libvirtd.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	if testing.Verbose() {
		log.SetOutput(os.Stderr)
	}
	w := &Watcher{StateDir: r.state, Log: log, BootID: "boot", Flush: time.Millisecond, DaemonPidFiles: []string{pidFile}}
	stop, done, ready := make(chan struct{}), make(chan error, 1), make(chan struct{})
	w.Ready = func() { close(ready) }
	r.w = w
	go func() { done <- w.Run(stop) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			close(stop)
			if err := <-done; err != nil {
				t.Errorf("watcher: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("watcher: %v", err)
	}
	r.record()
	return r
}

// record writes vm1's record for the rig's directory and makes the
// handshake, as prepare does.
func (r *rig) record() {
	r.t.Helper()
	rec := inventory.New("vm1", "boot", qemuUID, qemuGID, []string{r.dir})
	r.gen = time.Now().UnixNano()
	rec.Gen = r.gen
	if err := inventory.Save(r.state, rec); err != nil {
		r.t.Fatal(err)
	}
	r.sync()
}

func (r *rig) sync() {
	r.t.Helper()
	if err := Sync(r.state, "vm1", r.gen, 10*time.Second); err != nil {
		r.t.Fatalf("Sync: %v", err)
	}
}

// libvirtChown chowns p from a fork-like child of this "daemon", which
// lives until the watcher has read the event.
func (r *rig) libvirtChown(p string, uid, gid int) {
	r.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		r.t.Fatal(err)
	}
	c := exec.Command(exe)
	c.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d:%d", childEnv, p, uid, gid))
	in, err := c.StdinPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	out, err := c.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		r.t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "done\n" {
		_ = in.Close()
		_ = c.Wait()
		r.t.Fatalf("libvirt child: %q", line)
	}
	r.sync() // read while it lives
	_ = in.Close()
	if err := c.Wait(); err != nil {
		r.t.Fatal(err)
	}
}

// goneChown chowns p from the same kind of child, which exits before the
// watcher reads the event.
func (r *rig) goneChown(p string, uid, gid int) {
	r.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		r.t.Fatal(err)
	}
	c := exec.Command(exe)
	c.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d:%d", childEnv, p, uid, gid))
	c.Stdin = strings.NewReader("")
	r.w.reading.Lock()
	out, err := c.CombinedOutput()
	r.w.reading.Unlock()
	if err != nil {
		r.t.Fatalf("libvirt child: %v %s", err, out)
	}
	r.sync()
}

// shell runs a command as an administrator would, then lets the watcher
// read its events.
func (r *rig) shell(args ...string) {
	r.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		r.t.Fatalf("%v: %v %s", args, err, out)
	}
	r.sync()
}

func (r *rig) labelled() map[string]inventory.File {
	r.t.Helper()
	l, err := inventory.LoadLabelled(r.state)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]inventory.File{}
	for _, f := range l.Files {
		out[f.Path] = f
	}
	return out
}

func (r *rig) file(name string, uid int) string {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// TestWhoLabelled: only a change libvirt's daemon made, seen while its
// process lived, is recorded as libvirt's label.
func TestWhoLabelled(t *testing.T) {
	r := newRig(t, "")
	hot := r.file("hot.img", userUID)
	admin := r.file("admin.img", userUID)
	gone := r.file("gone.img", userUID)
	r.sync()
	r.libvirtChown(hot, qemuUID, qemuGID)
	r.shell("chown", fmt.Sprintf("%d:%d", qemuUID, qemuGID), admin)
	r.goneChown(gone, qemuUID, qemuGID)
	l := r.labelled()
	if f, ok := l[hot]; !ok || !f.Proven || f.UID != userUID || f.GID != userUID {
		t.Errorf("labelled[hot.img] = %+v, %v; want proven, owner before %d", f, ok, userUID)
	}
	if f, ok := l[admin]; ok && f.Proven {
		t.Errorf("labelled[admin.img] = %+v: an administrator's chown taken for libvirt's label", f)
	}
	if f, ok := l[gone]; !ok || f.Proven {
		t.Errorf("labelled[gone.img] = %+v, %v; want recorded as not proven", f, ok)
	}
}

func unsafePtr(s string) *byte {
	b := append([]byte(s), 0)
	return &b[0]
}

// TestFloodLosesNothing: while the watcher is kept from reading, a user
// makes far more events in a watched directory than a bounded fanotify
// queue holds (16384); libvirt's labels of five victims' ISOs made after
// them are all still seen, with the owners known before.
func TestFloodLosesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := errors.Join(os.Chmod(filepath.Dir(dir), 0o755), os.Chown(dir, userUID, userUID)); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, dir)
	var victims []string
	for i := range 5 {
		victims = append(victims, r.file(fmt.Sprintf("victim%d.iso", i), userUID+1+i))
	}
	r.sync()
	exe := filepath.Join(filepath.Dir(dir), "storm")
	if b, err := os.ReadFile(os.Args[0]); err != nil || os.WriteFile(exe, b, 0o755) != nil {
		t.Fatalf("copy the test binary: %v", err)
	}
	storm := exec.Command(exe)
	storm.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", stormEnv, dir, 17000))
	storm.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: userUID, Gid: userUID}}
	r.w.reading.Lock()
	out, err := storm.CombinedOutput()
	for _, v := range victims {
		if err := os.Chown(v, qemuUID, qemuGID); err != nil { // libvirt's daemon itself
			t.Error(err)
		}
	}
	r.w.reading.Unlock()
	if err != nil {
		t.Fatalf("storm: %v %s", err, out)
	}
	r.sync()
	l := r.labelled()
	for i, v := range victims {
		if f, ok := l[v]; !ok || !f.Proven || f.UID != uint32(userUID+1+i) {
			t.Errorf("labelled[%s] = %+v, %v; want libvirt's label from %d", filepath.Base(v), f, ok, userUID+1+i)
		}
	}
}

// TestLateForANewFile: libvirt creates a live operation's file as root,
// remembers that owner in its xattr and labels the file for QEMU, all
// before the watcher reads the creation. It takes the owner before from
// libvirt's xattr, only for a file born while the directory was watched,
// stamped with this boot, and never a remembered owner that is QEMU's.
func TestLateForANewFile(t *testing.T) {
	r := newRig(t, "")
	stamp := strconv.FormatInt(remembered.BootTime(), 10)
	mk := func(name, label string) string {
		t.Helper()
		p := filepath.Join(r.dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if label != "" {
			for k, v := range map[string]string{remembered.XattrDAC: label, remembered.XattrRefDAC: "1", remembered.XattrTimestamp: stamp} {
				if err := unix.Setxattr(p, k, []byte(v), 0); err != nil {
					t.Fatalf("trusted xattr on %s: %v", p, err)
				}
			}
		}
		if err := os.Chown(p, qemuUID, qemuGID); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Birth times come from the kernel's coarse clock, which may lag the
	// watch's start by a tick: files born in that tick count as old.
	time.Sleep(50 * time.Millisecond)
	r.w.reading.Lock()
	overlay := mk("s1.qcow2", "+0:+0")
	moved := mk("moved.qcow2", fmt.Sprintf("+%d:+%d", qemuUID, qemuGID))
	plain := mk("plain.raw", "")
	hot := mk("hot.raw", "+1000:+1001")
	stamp = "1600000000" // a copy of a file libvirt labelled on an earlier boot
	stale := mk("stale.img", "+1002:+1002")
	r.w.reading.Unlock()
	r.sync()
	l := r.labelled()
	want := map[string]string{overlay: "0:0", hot: "1000:1001"}
	for _, p := range []string{overlay, moved, plain, hot, stale} {
		got := ""
		if f, ok := l[p]; ok && f.Proven {
			got = fmt.Sprintf("%d:%d", f.UID, f.GID)
		}
		if got != want[p] {
			t.Errorf("%s: owner before = %q, want %q", filepath.Base(p), got, want[p])
		}
	}
}

// TestAdminChownToRoot: an administrator takes a file away from a user
// (chown root:root) in a watched directory; QEMU never had it, so it is
// nothing to give back. One libvirt labelled and an administrator then
// gave to someone else is no longer given back either.
func TestAdminChownToRoot(t *testing.T) {
	r := newRig(t, "")
	taken := r.file("taken.img", userUID)
	regiven := r.file("regiven.img", userUID)
	r.sync()
	r.shell("chown", "0:0", taken)
	r.libvirtChown(regiven, qemuUID, qemuGID)
	r.shell("chown", "4242:4242", regiven)
	l := r.labelled()
	for _, p := range []string{taken, regiven} {
		if f, ok := l[p]; ok {
			t.Errorf("labelled[%s] = %+v, want nothing", filepath.Base(p), f)
		}
	}
}

// TestRestartKeepsLabels: a watcher stopped and started again (systemctl
// restart) with the domain running still has what it saw before, and
// sees libvirt's labels made after.
func TestRestartKeepsLabels(t *testing.T) {
	dir := t.TempDir()
	before := func() *rig {
		r := newRig(t, dir)
		return r
	}()
	early := before.file("early.img", userUID)
	before.sync()
	before.libvirtChown(early, qemuUID, qemuGID)
	before.stop()
	// A new watcher on the same state directory, as after a restart.
	after := newRigAt(t, before.state, dir)
	late := after.file("late.img", userUID+1)
	after.sync()
	after.libvirtChown(late, qemuUID, qemuGID)
	l := after.labelled()
	if f, ok := l[early]; !ok || !f.Proven || f.UID != userUID {
		t.Errorf("after the restart, labelled[early.img] = %+v, %v; want kept", f, ok)
	}
	if f, ok := l[late]; !ok || !f.Proven || f.UID != userUID+1 {
		t.Errorf("after the restart, labelled[late.img] = %+v, %v; want seen", f, ok)
	}
}

// TestHandshake: prepare's handshake names its record's generation; a
// watcher answers only once it holds that one, and with none running
// the error says so at once.
func TestHandshake(t *testing.T) {
	t.Run("one watcher per state directory", func(t *testing.T) {
		r := newRig(t, "")
		w := &Watcher{StateDir: r.state, Log: r.w.Log}
		if err := w.Run(make(chan struct{})); err == nil || !strings.Contains(err.Error(), "another watcher runs") {
			t.Errorf("a second watcher's Run = %v, want a refusal", err)
		}
	})
	if err := Sync(t.TempDir(), "vm1", 1, time.Second); !errors.Is(err, ErrNoWatcher) {
		t.Errorf("Sync with no watcher = %v, want ErrNoWatcher", err)
	}
	r := newRig(t, "")
	if err := Sync(r.state, "vm1", r.gen+1, 5*time.Second); err == nil {
		t.Error("Sync naming a generation not written = nil, want an error")
	}
	if err := Sync(r.state, "vm2", 0, 5*time.Second); err != nil {
		t.Errorf("Sync of a removed record = %v", err)
	}
	if err := inventory.Remove(r.state, "vm1"); err != nil {
		t.Fatal(err)
	}
	if err := Sync(r.state, "vm1", 0, 5*time.Second); err != nil {
		t.Errorf("Sync after vm1's record is removed = %v", err)
	}
	// w.dirs is the main loop's: read it once Run has returned (teardown
	// closes the directories but keeps the map).
	r.stop()
	if len(r.w.dirs) != 0 {
		t.Errorf("watcher still follows %d directories after the only record is removed", len(r.w.dirs))
	}
}

// TestCopyThenLabelled: root's cp -a of a file libvirt labelled carries
// libvirt's xattrs with this boot's stamp; read only after the copy is
// whole (QEMU's already) and libvirt then labels the copy itself, it is
// still lent nothing from those xattrs.
func TestCopyThenLabelled(t *testing.T) {
	r := newRig(t, "")
	hot := r.file("hot.img", userUID)
	r.sync()
	for k, v := range map[string]string{
		remembered.XattrDAC:       fmt.Sprintf("+%d:+%d", userUID, userUID),
		remembered.XattrRefDAC:    "1",
		remembered.XattrTimestamp: strconv.FormatInt(remembered.BootTime(), 10),
	} {
		if err := unix.Setxattr(hot, k, []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	r.libvirtChown(hot, qemuUID, qemuGID)
	time.Sleep(50 * time.Millisecond) // the copy is born after the watch began, by the coarse clock too
	clone := filepath.Join(r.dir, "clone.img")
	r.w.reading.Lock()
	out, err := exec.Command("cp", "-a", hot, clone).CombinedOutput()
	if err == nil {
		err = os.Chown(clone, qemuUID, qemuGID) // libvirt's daemon labels the copy
	}
	r.w.reading.Unlock()
	if err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	r.sync()
	l := r.labelled()
	if f, ok := l[hot]; !ok || !f.Proven || f.UID != userUID {
		t.Errorf("labelled[hot.img] = %+v, %v; want libvirt's label from %d", f, ok, userUID)
	}
	if f, ok := l[clone]; ok && f.Proven {
		t.Errorf("labelled[clone.img] = %+v: the copy lent the owner its copied xattr names", f)
	}
}

// TestFlushWritesOnlyChanges: a handshake after changes that label
// nothing new (an administrator's chown, the hook's own) leaves
// labelled.json as it was, not rewritten; a label libvirt adds is written.
func TestFlushWritesOnlyChanges(t *testing.T) {
	r := newRig(t, "")
	first := r.file("first.img", userUID)
	r.sync()
	r.libvirtChown(first, qemuUID, qemuGID)
	inode := func() uint64 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(r.state, "inventory", "labelled.json"), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	before := inode()
	other := r.file("other.img", userUID)
	r.shell("chown", fmt.Sprintf("%d:%d", userUID+1, userUID+1), other)
	if after := inode(); after != before {
		t.Errorf("labelled.json rewritten (inode %d, was %d) though nothing new was labelled", after, before)
	}
	second := r.file("second.img", userUID)
	r.sync()
	r.libvirtChown(second, qemuUID, qemuGID)
	if after := inode(); after == before {
		t.Error("labelled.json not rewritten after libvirt labelled a file")
	}
	if _, ok := r.labelled()[second]; !ok {
		t.Errorf("labelled = %v, want %s in it", r.labelled(), second)
	}
}

// TestProcCache: a process judged not to be libvirt's is remembered only
// while it runs and libvirt's daemons are the ones it was judged against.
func TestProcCache(t *testing.T) {
	c := exec.Command("sleep", "30")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	pid := c.Process.Pid
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	pc := procCache{}
	who := Changer{Who: "sleep"}
	if !pc.keep(pid, pidfd, who, []int{1}) {
		t.Fatal("keep refused a live process")
	}
	if got, ok := pc.lookup(int32(pid), []int{1}); !ok || got != who {
		t.Errorf("lookup of a running process = %+v, %v; want %+v, true", got, ok, who)
	}
	if _, ok := pc.lookup(int32(pid), []int{1, 2}); ok {
		t.Error("lookup answered though libvirt's daemons changed")
	}
	pidfd, err = unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	pc.keep(pid, pidfd, who, []int{1})
	_ = c.Process.Kill()
	_ = c.Wait()
	if _, ok := pc.lookup(int32(pid), []int{1}); ok {
		t.Error("lookup answered for a process that exited: its pid may be another's now")
	}
	if len(pc) != 0 {
		t.Errorf("cache holds %d entries after its only process exited", len(pc))
	}
	if _, ok := pc.lookup(0, nil); ok {
		t.Error("lookup answered for pid 0 (a process of another pid namespace)")
	}
}

// TestFlushRewritesWhatWentMissing: a flush with nothing new still writes
// labelled.json when the file this watcher wrote is no longer there.
func TestFlushRewritesWhatWentMissing(t *testing.T) {
	state := t.TempDir()
	if err := inventory.MakeDir(state); err != nil {
		t.Fatal(err)
	}
	f := inventory.File{Dir: "/srv", Path: "/srv/a.img", UID: 1000, GID: 1000, Proven: true, By: "test"}
	w := &Watcher{StateDir: state, files: map[string]*track{"k": {lab: &f}}}
	for i, remove := range []bool{false, false, true} {
		if remove {
			if err := os.Remove(filepath.Join(state, "inventory", "labelled.json")); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.flush(); err != nil {
			t.Fatalf("flush %d: %v", i, err)
		}
		l, err := inventory.LoadLabelled(state)
		if err != nil || len(l.Files) != 1 || l.Files[0].Path != f.Path {
			t.Fatalf("after flush %d (removed before: %v), labelled = %+v, %v; want %s", i, remove, l, err, f.Path)
		}
	}
}

// TestWitnessRemembersOnlyOthers: a process judged not libvirt's is
// remembered for its next events; a fork of libvirt's daemon never is (it
// may exec another program under the same pid).
func TestWitnessRemembersOnlyOthers(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "libvirtd.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &Watcher{DaemonPidFiles: []string{pidFile}, procs: procCache{}}
	defer w.procs.clear()
	judge := func(pid int) Changer {
		t.Helper()
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatal(err)
		}
		evs := []event{{pid: int32(pid), pidfd: fd}}
		w.witness(evs)
		return evs[0].who
	}

	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	if c := judge(other.Process.Pid); c.Libvirt {
		t.Fatalf("sleep judged libvirt's: %+v", c)
	}
	if w.procs[int32(other.Process.Pid)] == nil {
		t.Error("a process judged not libvirt's is not remembered")
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fork := exec.Command(exe)
	fork.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d:%d", childEnv, f, qemuUID, qemuGID))
	in, err := fork.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := fork.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := fork.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = in.Close(); _ = fork.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "done\n" {
		t.Fatalf("libvirt child: %q", line)
	}
	if c := judge(fork.Process.Pid); !c.Libvirt {
		t.Fatalf("a fork of libvirt's daemon judged %+v", c)
	}
	if w.procs[int32(fork.Process.Pid)] != nil {
		t.Error("a fork of libvirt's daemon is remembered")
	}
}
