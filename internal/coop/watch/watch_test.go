package watch

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
)

const (
	qemuUID, qemuGID = 64055, 64055
	userUID          = 1234
)

// childEnv makes the test binary, run again, play a fork of libvirt's
// daemon: it takes libvirt's worker thread name, chowns, says so, and
// lives until its stdin closes.
const childEnv = "WATCH_TEST_LIBVIRT_CHOWN"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(libvirtChild(spec))
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

// rig is a watcher of a temporary state directory whose "libvirt daemon"
// is this test process.
type rig struct {
	t     *testing.T
	state string
	dir   string
	gen   int64
	w     *Watcher
}

func newRig(t *testing.T, dir string) *rig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root")
	}
	r := &rig{t: t, state: t.TempDir(), dir: dir}
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
	t.Cleanup(func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
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
