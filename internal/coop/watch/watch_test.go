package watch

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/remembered"
)

const qemuUID, qemuGID = 64055, 994

func newWatcher(t *testing.T, state string, known func([]inventory.File) []bool) (*Watcher, func()) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	w := &Watcher{StateDir: state, Log: log, Known: known, Idle: 200 * time.Millisecond, Flush: 10 * time.Millisecond}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- w.Run(stop) }()
	return w, func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// recorded is what the watcher wrote down for path: the owner it had
// before it was labelled.
func recorded(t *testing.T, state, domain, path string) (inventory.File, bool) {
	t.Helper()
	r, err := inventory.Load(state, domain)
	if err != nil || r == nil {
		return inventory.File{}, false
	}
	l, err := inventory.LoadLabelled(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range l.In(r) {
		if f.Path() == path {
			return f, true
		}
	}
	return inventory.File{}, false
}

// TestWatcherRecordsLabelledFiles: a file that existed when the watcher
// started and one created later are labelled for QEMU (as libvirt's
// attach-disk does); the watcher writes down the owner each had before,
// forgets it once the file has it back, and leaves alone files the
// journal knows and hidden ones. A second watcher does not start.
func TestWatcherRecordsLabelledFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files other owners")
	}
	state, images := t.TempDir(), t.TempDir()
	mk := func(name string, uid, gid int) string {
		t.Helper()
		p := filepath.Join(images, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	chown := func(p string, uid, gid int) {
		t.Helper()
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	old := mk("old.iso", 1002, 1003)
	journalled := mk("journalled.img", 1004, 1005)
	if err := inventory.Save(state, inventory.New("vm1", "boot", qemuUID, qemuGID, []string{images})); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(journalled, &st); err != nil {
		t.Fatal(err)
	}
	_, stop := newWatcher(t, state, func(fs []inventory.File) []bool {
		out := make([]bool, len(fs))
		for i, f := range fs {
			out[i] = f.Ino == st.Ino
		}
		return out
	})
	defer stop()
	waitFor(t, "the watcher to hold its lock", func() bool { return Running(state) })
	if err := (&Watcher{StateDir: state, Log: logrus.New()}).Run(nil); err != nil {
		t.Errorf("a second watcher: %v, want nil (it leaves at once)", err)
	}

	hot := mk("hot.raw", 1000, 1001)
	time.Sleep(50 * time.Millisecond) // the admin types virsh attach-disk
	if _, ok := recorded(t, state, "vm1", hot); ok {
		t.Error("hot.raw recorded as labelled before anything labelled it")
	}
	chown(hot, qemuUID, qemuGID)
	chown(old, qemuUID, qemuGID)
	chown(journalled, qemuUID, qemuGID)
	waitFor(t, "hot.raw recorded as labelled from 1000:1001", func() bool {
		f, ok := recorded(t, state, "vm1", hot)
		return ok && f.UID == 1000 && f.GID == 1001
	})
	waitFor(t, "old.iso recorded as labelled from 1002:1003", func() bool {
		f, ok := recorded(t, state, "vm1", old)
		return ok && f.UID == 1002 && f.GID == 1003
	})
	// libvirt "restores" hot.raw to root:root: still labelled, same owner before.
	chown(hot, 0, 0)
	if err := os.WriteFile(filepath.Join(images, ".hidden"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	chown(filepath.Join(images, ".hidden"), qemuUID, qemuGID)
	time.Sleep(100 * time.Millisecond)
	if f, ok := recorded(t, state, "vm1", hot); !ok || f.UID != 1000 {
		t.Errorf("after root:root the record of hot.raw says %+v (found %v), want 1000:1001", f, ok)
	}
	if _, ok := recorded(t, state, "vm1", journalled); ok {
		t.Error("a file the journal knows was recorded as labelled")
	}
	if _, ok := recorded(t, state, "vm1", filepath.Join(images, ".hidden")); ok {
		t.Error("a hidden file was recorded")
	}
	// Given back: forgotten.
	chown(old, 1002, 1003)
	waitFor(t, "old.iso forgotten once given back", func() bool {
		_, ok := recorded(t, state, "vm1", old)
		return !ok
	})
}

// TestWatcherLeavesWhenIdle: with no inventory left the watcher ends.
func TestWatcherLeavesWhenIdle(t *testing.T) {
	state, images := t.TempDir(), t.TempDir()
	if err := inventory.Save(state, inventory.New("vm1", "boot", qemuUID, qemuGID, []string{images})); err != nil {
		t.Fatal(err)
	}
	w := &Watcher{StateDir: state, Log: logrus.New(), Idle: 100 * time.Millisecond, Flush: 10 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- w.Run(make(chan struct{})) }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("watcher left while an inventory exists: %v", err)
	default:
	}
	if err := inventory.Remove(state, "vm1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watcher still runs with no inventory left")
	}
}

// TestWatcherAdminChownToRoot: an administrator takes a file away from a
// user (chown root:root) in a watched directory; QEMU never had it, so it
// is nothing the watcher gives back.
func TestWatcherAdminChownToRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files other owners")
	}
	state, images := t.TempDir(), t.TempDir()
	p := filepath.Join(images, "key.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := inventory.Save(state, inventory.New("vm1", "boot", qemuUID, qemuGID, []string{images})); err != nil {
		t.Fatal(err)
	}
	_, stop := newWatcher(t, state, nil)
	defer stop()
	waitFor(t, "the watcher to hold its lock", func() bool { return Running(state) })
	if err := os.Chown(p, 0, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if f, ok := recorded(t, state, "vm1", p); ok {
		t.Errorf("an administrator's chown to root:root was recorded as libvirt's restore: %+v", f)
	}
}

// TestWatcherLateForANewFile: libvirt creates a live operation's file as
// root, remembers that owner in its xattr and labels the file for QEMU,
// all before the watcher reads the creation. The events are drained only
// after every change, so the watcher is late for certain: it takes the
// owner before from libvirt's xattr, but only for a file born while the
// directory was watched, and never a remembered owner that is QEMU's.
func TestWatcherLateForANewFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files other owners and set trusted xattrs")
	}
	state, images := t.TempDir(), t.TempDir()
	stamp := strconv.FormatInt(remembered.BootTime(), 10)
	mk := func(name string, label string) string {
		t.Helper()
		p := filepath.Join(images, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if label != "" {
			for k, v := range map[string]string{remembered.XattrDAC: label, remembered.XattrRefDAC: "1", remembered.XattrTimestamp: stamp} {
				if err := unix.Setxattr(p, k, []byte(v), 0); err != nil {
					t.Skipf("no trusted xattrs in %s: %v", images, err)
				}
			}
		}
		if err := os.Chown(p, qemuUID, qemuGID); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Labelled before the watch began: its xattr may be a crash's.
	before := mk("before.img", "+1000:+1000")
	if err := inventory.Save(state, inventory.New("vm1", "boot", qemuUID, qemuGID, []string{images})); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	w := &Watcher{StateDir: state, Log: log, Flush: time.Hour}
	invWD, err := w.setup()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(w.ifd)
	// Birth times come from the kernel's coarse clock, which may lag the
	// watch's start by a tick: files born in that tick count as old.
	time.Sleep(50 * time.Millisecond)
	overlay := mk("s1.qcow2", "+0:+0")
	moved := mk("moved.qcow2", fmt.Sprintf("+%d:+%d", qemuUID, qemuGID))
	plain := mk("plain.raw", "")
	hot := mk("hot.raw", "+1000:+1001")
	// A copy (cp -a) of a file libvirt labelled on an earlier boot.
	stamp = "1600000000"
	stale := mk("stale.img", "+1002:+1002")
	if err := os.Chmod(before, 0o640); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	w.drain(buf, invWD)
	want := map[string]string{overlay: "0:0", hot: "1000:1001"}
	for _, p := range []string{overlay, moved, plain, hot, before, stale} {
		c, ok := w.candidates[p]
		got := ""
		if ok {
			got = fmt.Sprintf("%d:%d", c.UID, c.GID)
		}
		if got != want[p] {
			t.Errorf("%s: owner before = %q, want %q", filepath.Base(p), got, want[p])
		}
	}
	// libvirt then moves the old top's label (QEMU's) onto the overlay:
	// what the watcher wrote down stays.
	if err := unix.Setxattr(overlay, remembered.XattrDAC, fmt.Appendf(nil, "+%d:+%d", qemuUID, qemuGID), 0); err != nil {
		t.Fatal(err)
	}
	w.drain(buf, invWD)
	if c := w.candidates[overlay]; c.UID != 0 || c.GID != 0 {
		t.Errorf("after libvirt moved a label onto it, s1.qcow2's owner before = %d:%d, want 0:0", c.UID, c.GID)
	}
}

// TestSpawnLock: one prepare at a time starts a watcher; the others see
// the lock taken, and it is free again once released.
func TestSpawnLock(t *testing.T) {
	state := t.TempDir()
	unlock, ok := TrySpawnLock(state)
	if !ok {
		t.Fatal("first TrySpawnLock: not taken")
	}
	if _, ok := TrySpawnLock(state); ok {
		t.Error("second TrySpawnLock while the first holds it: taken")
	}
	unlock()
	again, ok := TrySpawnLock(state)
	if !ok {
		t.Fatal("TrySpawnLock after unlock: not taken")
	}
	again()
}
