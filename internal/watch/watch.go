package watch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/inventory"
)

// LockName is the lock file a running watcher holds in the state directory.
const LockName = "watch.lock"

// Watcher keeps the inventories in StateDir current.
type Watcher struct {
	StateDir string
	// Lock and Unlock serialise writes of inventories with prepare and
	// release (the journal's lock).
	Lock   func() error
	Unlock func()
	Log    logrus.FieldLogger
	// Idle is how long the watcher stays without any inventory.
	Idle time.Duration
	// Flush is how long changes are gathered before they are written.
	Flush time.Duration

	ifd     int
	dirs    map[int]string // watch descriptor -> directory
	wds     map[string]int
	recs    map[string]*inventory.Record // by domain: what is on disk
	pending map[string]inventory.File    // by path: owners seen, not written yet
}

const dirEvents = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

// Running reports whether a watcher holds the lock of stateDir. It only
// asks (F_OFD_GETLK): taking the lock to see, even for an instant, could
// make a watcher starting then believe another one runs.
func Running(stateDir string) bool {
	fd, err := unix.Open(filepath.Join(stateDir, LockName), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}

// Run watches until no inventory is left for Idle, or stop is closed. It
// returns nil at once when another watcher runs.
func (w *Watcher) Run(stop <-chan struct{}) error {
	lfd, err := unix.Open(filepath.Join(w.StateDir, LockName), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("watch lock: %w", err)
	}
	defer unix.Close(lfd)
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(lfd), unix.F_OFD_SETLK, &lk); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil // another watcher runs
		}
		return fmt.Errorf("watch lock: %w", err)
	}
	invDir := filepath.Join(w.StateDir, "inventory")
	if err := os.MkdirAll(invDir, 0o700); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	w.ifd, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	defer unix.Close(w.ifd)
	invWD, err := unix.InotifyAddWatch(w.ifd, invDir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_ONLYDIR)
	if err != nil {
		return fmt.Errorf("inotify %s: %w", invDir, err)
	}
	w.dirs, w.wds, w.pending = map[int]string{}, map[string]int{}, map[string]inventory.File{}
	w.reload()
	idleSince := time.Now()
	var dirtySince time.Time
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-stop:
			return w.flush()
		default:
		}
		if len(w.recs) > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) > w.Idle {
			return nil
		}
		fds := []unix.PollFd{{Fd: int32(w.ifd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(w.Flush/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll: %w", err)
		}
		reload := false
		for {
			n, err := unix.Read(w.ifd, buf)
			if err != nil || n <= 0 {
				break
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := ""
				if ev.Len > 0 {
					raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
					name = string(raw[:clen(raw)])
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
				switch {
				case int(ev.Wd) == invWD:
					reload = true
				case ev.Mask&unix.IN_Q_OVERFLOW != 0:
					// Events were lost: what changed is unknown, and
					// guessing could record QEMU's owner as a user's.
					w.Log.Warn("inotify queue overflowed: owners set in that moment are not recorded")
				default:
					if w.seen(w.dirs[int(ev.Wd)], name) && dirtySince.IsZero() {
						dirtySince = time.Now()
					}
				}
			}
		}
		if reload {
			w.reload()
		}
		if !dirtySince.IsZero() && time.Since(dirtySince) >= w.Flush {
			if err := w.flush(); err != nil {
				w.Log.WithError(err).Warn("inventory update failed")
			}
			dirtySince = time.Time{}
		}
	}
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// reload reads the inventories and watches exactly their directories.
func (w *Watcher) reload() {
	recs, err := inventory.List(w.StateDir)
	if err != nil {
		w.Log.WithError(err).Warn("inventory unreadable")
	}
	w.recs = map[string]*inventory.Record{}
	want := map[string]bool{}
	for _, r := range recs {
		w.recs[r.Domain] = r
		for _, d := range r.Dirs {
			want[d] = true
		}
	}
	for d, wd := range w.wds {
		if !want[d] {
			_, _ = unix.InotifyRmWatch(w.ifd, uint32(wd))
			delete(w.wds, d)
			delete(w.dirs, wd)
		}
	}
	for d := range want {
		if _, ok := w.wds[d]; ok {
			continue
		}
		wd, err := unix.InotifyAddWatch(w.ifd, d, dirEvents)
		if err != nil {
			continue
		}
		w.wds[d], w.dirs[wd] = wd, d
	}
}

// seen reads the owner of dir/name now and notes it for every inventory
// that covers dir and would learn something; it reports whether one would.
func (w *Watcher) seen(dir, name string) bool {
	if dir == "" || name == "" {
		return false
	}
	news := false
	for _, r := range w.recs {
		if !covers(r, dir) {
			continue
		}
		f, ok := inventory.Stat(dir, name, r.QEMUUID, r.QEMUGID)
		if !ok {
			continue
		}
		if known(r, f) {
			continue
		}
		w.pending[f.Path()] = f
		news = true
	}
	return news
}

func covers(r *inventory.Record, dir string) bool {
	for _, d := range r.Dirs {
		if d == dir {
			return true
		}
	}
	return false
}

func known(r *inventory.Record, f inventory.File) bool {
	for _, g := range r.Files {
		if g == f {
			return true
		}
	}
	return false
}

// flush writes the owners seen into the inventories on disk, under the
// lock, re-reading each first: prepare and release change them too.
func (w *Watcher) flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	if err := w.Lock(); err != nil {
		return err
	}
	defer w.Unlock()
	recs, err := inventory.List(w.StateDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range recs {
		changed := false
		for _, f := range w.pending {
			if covers(r, f.Dir) && (f.UID != r.QEMUUID || f.GID != r.QEMUGID) && r.Update(f) {
				changed = true
			}
		}
		if changed {
			if err := inventory.Save(w.StateDir, r); err != nil {
				errs = append(errs, err)
				continue
			}
			w.Log.WithField("domain", r.Domain).Debug("inventory updated")
		}
		w.recs[r.Domain] = r
	}
	w.pending = map[string]inventory.File{}
	return errors.Join(errs...)
}
