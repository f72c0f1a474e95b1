package watch

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/inventory"
)

// LockName is the lock file a running watcher holds in the state directory.
const LockName = "watch.lock"

// Watcher keeps, while domains run, the owners of files that appear or
// change in their inventoried directories, in the inventory directory's
// observed.json, which only it writes.
type Watcher struct {
	StateDir string
	Log      logrus.FieldLogger
	// Idle is how long the watcher stays without any inventory.
	Idle time.Duration
	// Flush is how long changes are gathered before they are written.
	Flush time.Duration

	ifd      int
	dirs     map[int]string // watch descriptor -> directory
	wds      map[string]int
	recs     map[string]*inventory.Record // by file name in the inventory directory
	observed *inventory.Observed
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
	for {
		again, err := w.run(stop)
		if !again || err != nil {
			return err
		}
	}
}

// run is one watch under the lock. It reports again when an inventory
// appeared while it was leaving: the prepare that wrote it saw a watcher
// running and started none.
func (w *Watcher) run(stop <-chan struct{}) (again bool, err error) {
	lfd, err := unix.Open(filepath.Join(w.StateDir, LockName), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return false, fmt.Errorf("watch lock: %w", err)
	}
	unlock := func() {
		if lfd >= 0 {
			_ = unix.Close(lfd)
			lfd = -1
		}
	}
	defer unlock()
	invDir := filepath.Join(w.StateDir, "inventory")
	if err := os.MkdirAll(invDir, 0o700); err != nil {
		return false, fmt.Errorf("watch: %w", err)
	}
	w.ifd, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return false, fmt.Errorf("inotify: %w", err)
	}
	defer unix.Close(w.ifd)
	invWD, err := unix.InotifyAddWatch(w.ifd, invDir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_ONLYDIR)
	if err != nil {
		return false, fmt.Errorf("inotify %s: %w", invDir, err)
	}
	w.dirs, w.wds, w.recs = map[int]string{}, map[string]int{}, map[string]*inventory.Record{}
	if w.observed, err = inventory.LoadObserved(w.StateDir); err != nil {
		w.Log.WithError(err).Warn("observed owners unreadable: starting afresh")
	}
	if ents, err := os.ReadDir(invDir); err == nil {
		for _, e := range ents {
			w.record(e.Name())
		}
	}
	w.rewatch()
	// Locked once the directories are watched: a prepare that sees a
	// watcher running may count on it seeing every later change.
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(lfd), unix.F_OFD_SETLK, &lk); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return false, nil // another watcher runs
		}
		return false, fmt.Errorf("watch lock: %w", err)
	}
	idleSince := time.Now()
	var dirtySince time.Time
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-stop:
			return false, w.flush()
		default:
		}
		if len(w.recs) > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) > w.Idle {
			// Nobody left to give anything back to.
			_ = os.Remove(filepath.Join(invDir, "observed.json"))
			unlock() // a new watcher may start from here on
			recs, _ := inventory.List(w.StateDir)
			return len(recs) > 0, nil
		}
		fds := []unix.PollFd{{Fd: int32(w.ifd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(w.Flush/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
			return false, fmt.Errorf("poll: %w", err)
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
					if w.record(name) {
						reload = true
					}
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
			w.rewatch()
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

// record reads (or forgets) the inventory file name after an event in the
// inventory directory, and reports whether the set of domains changed.
func (w *Watcher) record(name string) bool {
	hexDomain, ok := strings.CutSuffix(name, ".json")
	if !ok || strings.HasPrefix(name, ".") || name == "observed.json" {
		return false
	}
	dom, err := hex.DecodeString(hexDomain)
	if err != nil {
		return false
	}
	r, err := inventory.Load(w.StateDir, string(dom))
	if err != nil {
		w.Log.WithError(err).Warn("inventory unreadable")
	}
	if r == nil {
		_, had := w.recs[name]
		delete(w.recs, name)
		return had
	}
	w.recs[name] = r
	return true
}

// rewatch watches exactly the directories of the inventories known, and
// forgets observations in directories no inventory covers any more.
func (w *Watcher) rewatch() {
	want := map[string]bool{}
	for _, r := range w.recs {
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
	for p, f := range w.observed.Files {
		if !want[f.Dir] {
			delete(w.observed.Files, p)
		}
	}
}

// seen reads the owner of dir/name now and keeps it, unless it is the
// QEMU owner of a domain using dir (then libvirt labelled it, and the owner
// kept before is the one to give back). It reports whether it kept one.
func (w *Watcher) seen(dir, name string) bool {
	if dir == "" || name == "" {
		return false
	}
	f, ok := inventory.Stat(dir, name, ^uint32(0), ^uint32(0))
	if !ok {
		return false
	}
	for _, r := range w.recs {
		if f.UID == r.QEMUUID && f.GID == r.QEMUGID {
			return false
		}
	}
	p := f.Path()
	if old, ok := w.observed.Files[p]; ok && old == f {
		return false
	}
	if _, ok := w.observed.Files[p]; !ok && len(w.observed.Files) >= inventory.MaxFiles {
		return false
	}
	w.observed.Files[p] = f
	return true
}

// flush writes what was observed.
func (w *Watcher) flush() error {
	return inventory.SaveObserved(w.StateDir, w.observed)
}
