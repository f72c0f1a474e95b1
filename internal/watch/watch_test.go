package watch

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/inventory"
)

const qemuUID, qemuGID = 64055, 994

func newWatcher(t *testing.T, state string) (*Watcher, func()) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	w := &Watcher{StateDir: state, Log: log, Idle: 200 * time.Millisecond, Flush: 10 * time.Millisecond}
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

// recorded is what release would use for path: the record of domain
// with what the watcher observed.
func recorded(t *testing.T, state, domain, path string) (inventory.File, bool) {
	t.Helper()
	r, err := inventory.Load(state, domain)
	if err != nil || r == nil {
		return inventory.File{}, false
	}
	o, err := inventory.LoadObserved(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range r.With(o) {
		if f.Path() == path {
			return f, true
		}
	}
	return inventory.File{}, false
}

// TestWatcherRecordsNewFiles: a disk created after prepare, chowned to a
// user, then labelled for QEMU by libvirt, keeps the user as its recorded
// owner; a second watcher does not start while one runs.
func TestWatcherRecordsNewFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files other owners")
	}
	state, images := t.TempDir(), t.TempDir()
	if err := inventory.Save(state, inventory.Take("vm1", "boot", qemuUID, qemuGID, []string{images})); err != nil {
		t.Fatal(err)
	}
	_, stop := newWatcher(t, state)
	defer stop()
	waitFor(t, "the watcher to hold its lock", func() bool { return Running(state) })
	if err := (&Watcher{StateDir: state, Log: logrus.New()}).Run(nil); err != nil {
		t.Errorf("a second watcher: %v, want nil (it leaves at once)", err)
	}

	hot := filepath.Join(images, "hot.raw")
	if err := os.WriteFile(hot, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(hot, 1000, 1001); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hot.raw recorded as 1000:1001", func() bool {
		f, ok := recorded(t, state, "vm1", hot)
		return ok && f.UID == 1000 && f.GID == 1001
	})
	// libvirt's attach-disk labels it: the record keeps the user.
	if err := os.Chown(hot, qemuUID, qemuGID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if f, ok := recorded(t, state, "vm1", hot); !ok || f.UID != 1000 || f.GID != 1001 {
		t.Errorf("after QEMU got hot.raw the record says %+v (found %v), want 1000:1001", f, ok)
	}
	// Hidden files are not images.
	if err := os.WriteFile(filepath.Join(images, ".hidden"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, ok := recorded(t, state, "vm1", filepath.Join(images, ".hidden")); ok {
		t.Error("a hidden file was recorded")
	}
}

// TestWatcherLeavesWhenIdle: with no inventory left the watcher ends.
func TestWatcherLeavesWhenIdle(t *testing.T) {
	state, images := t.TempDir(), t.TempDir()
	if err := inventory.Save(state, inventory.Take("vm1", "boot", qemuUID, qemuGID, []string{images})); err != nil {
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
