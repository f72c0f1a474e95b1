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

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/remembered"
)

// LockName is the lock file a running watcher holds in the state directory.
const LockName = "watch.lock"

// Watcher follows the directories of the domains' records in StateDir.
type Watcher struct {
	StateDir string
	Log      logrus.FieldLogger
	// Known reports whether the journal records an inode: those are the
	// journal's to give back, not the watcher's. It is asked in batches,
	// when the watcher writes what it saw.
	Known func(ids []inventory.File) []bool
	// BootID is this boot's id: records of other boots are not followed.
	BootID string
	// Idle is how long the watcher stays without any record.
	Idle time.Duration
	// Flush is how long changes are gathered before they are written.
	Flush time.Duration

	ifd   int
	dirs  map[int]string // watch descriptor -> directory
	wds   map[string]int
	recs  map[string]*inventory.Record // by file name in the inventory directory
	files map[string]map[string]inventory.File
	// since is when each directory began to be watched (Unix ns): a file
	// born later is new, and everything on it was written since.
	since    map[string]int64
	bootTime int64 // the kernel's, Unix seconds; read when first needed
	labelled *inventory.Labelled
	// candidates were labelled since the last flush; the journal has not
	// been asked about them yet.
	candidates map[string]inventory.File
}

const dirEvents = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

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

// SpawnLockName is the lock a prepare holds while it starts a watcher
// and waits for it: prepares that run at once (a boot storm) start one
// watcher between them, not one each.
const SpawnLockName = "watch.spawn"

// TrySpawnLock takes the spawn lock of stateDir without waiting. ok is
// false when another process holds it (it is starting a watcher); unlock
// releases it, and so does the holder's exit.
func TrySpawnLock(stateDir string) (unlock func(), ok bool) {
	fd, err := unix.Open(filepath.Join(stateDir, SpawnLockName), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		// No lock to share: start one anyway, a second watcher leaves at once.
		return func() {}, true
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); err != nil {
		_ = unix.Close(fd)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, false
		}
		return func() {}, true // cannot tell: start one, a second leaves at once
	}
	return func() { _ = unix.Close(fd) }, true
}

// Run watches until no record is left for Idle, or stop is closed. It
// returns nil at once when another watcher runs.
func (w *Watcher) Run(stop <-chan struct{}) error {
	for {
		again, err := w.run(stop)
		if !again || err != nil {
			return err
		}
	}
}

// run is one watch under the lock. It reports again when a record
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
	invWD, err := w.setup()
	if err != nil {
		return false, err
	}
	defer unix.Close(w.ifd)
	// Locked once the directories are watched: a prepare that sees a
	// watcher running may count on it seeing every later change.
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(lfd), unix.F_OFD_SETLK, &lk); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return false, nil // another watcher runs
		}
		return false, fmt.Errorf("watch lock: %w", err)
	}
	invDir := filepath.Join(w.StateDir, "inventory")
	idleSince := time.Now()
	var dirtySince time.Time
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-stop:
			return false, w.flush()
		default:
		}
		if _, err := os.Stat(invDir); err != nil {
			return false, nil // the state directory was removed: nothing left to follow
		}
		if len(w.recs) > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) > w.Idle {
			// Nobody left to give anything back to.
			if err := inventory.RemoveLabelled(w.StateDir); err != nil {
				w.Log.WithError(err).Warn("labelled files record not removed")
			}
			unlock() // a new watcher may start from here on
			recs, _ := inventory.List(w.StateDir)
			return len(recs) > 0, nil
		}
		fds := []unix.PollFd{{Fd: int32(w.ifd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(w.Flush/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
			return false, fmt.Errorf("poll: %w", err)
		}
		if w.drain(buf, invWD) && dirtySince.IsZero() {
			dirtySince = time.Now()
		}
		if !dirtySince.IsZero() && time.Since(dirtySince) >= w.Flush {
			if err := w.flush(); err != nil {
				w.Log.WithError(err).Warn("labelled files not written")
			}
			dirtySince = time.Time{}
		}
	}
}

// setup starts inotify on the inventory directory and on every directory
// the records name.
func (w *Watcher) setup() (invWD int, err error) {
	invDir := filepath.Join(w.StateDir, "inventory")
	if err := os.MkdirAll(invDir, 0o700); err != nil {
		return 0, fmt.Errorf("watch: %w", err)
	}
	w.ifd, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return 0, fmt.Errorf("inotify: %w", err)
	}
	invWD, err = unix.InotifyAddWatch(w.ifd, invDir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_ONLYDIR)
	if err != nil {
		_ = unix.Close(w.ifd)
		return 0, fmt.Errorf("inotify %s: %w", invDir, err)
	}
	w.dirs, w.wds, w.recs = map[int]string{}, map[string]int{}, map[string]*inventory.Record{}
	w.files, w.candidates = map[string]map[string]inventory.File{}, map[string]inventory.File{}
	w.since = map[string]int64{}
	if w.labelled, err = inventory.LoadLabelled(w.StateDir); err != nil {
		w.Log.WithError(err).Warn("labelled files unreadable: starting afresh")
	}
	for _, name := range inventory.Names(invDir) {
		w.record(name)
	}
	w.rewatch()
	return invWD, nil
}

// drain handles every queued event; it reports whether anything was
// labelled or given back.
func (w *Watcher) drain(buf []byte, invWD int) (changed bool) {
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
			case ev.Mask&unix.IN_Q_OVERFLOW != 0:
				// Events were lost: what the watcher knew may be wrong, so
				// it forgets it and reads the directories again (files
				// QEMU holds by then stay unknown, the careful way).
				w.Log.Warn("inotify queue overflowed: owners set in that moment are not recorded")
				for d := range w.files {
					w.files[d] = w.scan(d)
				}
			case int(ev.Wd) == invWD:
				if w.record(name) {
					reload = true
				}
			default:
				if w.seen(w.dirs[int(ev.Wd)], name) {
					changed = true
				}
			}
		}
	}
	if reload {
		w.rewatch()
	}
	return changed
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// record reads (or forgets) a domain's record after an event in the
// inventory directory, and reports whether the set of records changed.
func (w *Watcher) record(name string) bool {
	dom, ok := inventory.DomainOf(name)
	if !ok {
		return false
	}
	r, err := inventory.Load(w.StateDir, dom)
	if err != nil {
		w.Log.WithError(err).Warn("record unreadable")
	}
	if r == nil || (w.BootID != "" && r.BootID != w.BootID) {
		// Gone, or left by a boot that ended: its domain runs no more,
		// and restore gives back what it vouches for.
		_, had := w.recs[name]
		delete(w.recs, name)
		return had
	}
	w.recs[name] = r
	return true
}

// rewatch watches exactly the directories of the records, reading each
// newly watched one once for the owners its files have now.
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
			delete(w.files, d)
			delete(w.since, d)
		}
	}
	for d := range want {
		if _, ok := w.wds[d]; ok {
			continue
		}
		since := time.Now().UnixNano()
		wd, err := unix.InotifyAddWatch(w.ifd, d, dirEvents)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				w.Log.WithField("dir", d).WithError(err).Warn("directory not followed (fs.inotify.max_user_watches?): files labelled there keep the owner libvirt leaves")
			}
			continue
		}
		w.wds[d], w.dirs[wd] = wd, d
		w.since[d] = since
		w.files[d] = w.scan(d)
	}
}

// scan reads the owners the files of d have now.
func (w *Watcher) scan(d string) map[string]inventory.File {
	files := map[string]inventory.File{}
	for _, n := range inventory.Names(d) {
		if len(files) >= inventory.MaxFiles {
			w.Log.WithField("dir", d).Warnf("more than %d files: owners of the rest are not followed", inventory.MaxFiles)
			break
		}
		if f, ok := inventory.Stat(d, n); ok && !w.qemuOwned(f) {
			files[n] = f
		}
	}
	return files
}

// qemuOwned reports whether f is owned by the QEMU user of a domain.
func (w *Watcher) qemuOwned(f inventory.File) bool {
	for _, r := range w.recs {
		if f.UID == r.QEMUUID && f.GID == r.QEMUGID {
			return true
		}
	}
	return false
}

// seen reads dir/name now. A file that became QEMU's, or root:root (what
// libvirt "restores" to), from an owner the watcher knew becomes a
// candidate to give back; one that got that owner back is one no more.
// Every other owner is remembered as the file's own. It reports whether
// anything to write changed.
func (w *Watcher) seen(dir, name string) bool {
	known := w.files[dir]
	if known == nil {
		return false
	}
	f, ok := inventory.Stat(dir, name)
	prev, had := known[name]
	if !ok {
		delete(known, name)
		return false
	}
	p := f.Path()
	if had && !prev.SameInode(f) {
		had = false
	}
	// root:root is libvirt's restore only of a file it labelled first:
	// one the watcher saw become QEMU's. Anyone else's chown to root is
	// an administrator's.
	wasQEMU := false
	if c, ok := w.candidates[p]; ok && c.SameInode(f) {
		wasQEMU = true
	}
	if l, ok := w.labelled.Files[p]; ok && l.SameInode(f) {
		wasQEMU = true
	}
	labelledNow := w.qemuOwned(f) || (f.UID == 0 && f.GID == 0 && wasQEMU)
	if labelledNow {
		if !had {
			if wasQEMU {
				return false // its owner before is written down already
			}
			if prev, had = w.remembered(dir, name, f); !had {
				return false // its owner before is unknown
			}
		}
		w.candidates[p] = prev
		return true
	}
	if len(known) < inventory.MaxFiles || had {
		known[name] = f
	}
	if l, ok := w.labelled.Files[p]; ok && l.SameInode(f) && l.UID == f.UID && l.GID == f.GID {
		delete(w.labelled.Files, p) // given back
		return true
	}
	delete(w.candidates, p)
	return false
}

// remembered is the owner a file the watcher first saw already labelled
// had before, as libvirt's remember_owner xattr says, for files born
// while their directory was watched. libvirt creates the files of live
// operations (snapshot overlays, copy targets) itself and labels them a
// moment later, often before the watcher reads the creation; it writes
// the owner it found into the xattr just before its chown. Trusted only
// on a file born since the watch began (no label libvirt wrote on an
// earlier file), with libvirt's own stamp of this boot, and read from the
// very inode stat saw (opened O_PATH and compared), so that a rename in
// between cannot lend one file another's owner. A remembered owner that
// is QEMU's says nothing (libvirt moves the old top's label onto a
// snapshot overlay, and the old top was QEMU's already): the owner stays
// unknown.
func (w *Watcher) remembered(dir, name string, f inventory.File) (inventory.File, bool) {
	if f.Birth == 0 || f.Birth < w.since[dir] || f.Birth > time.Now().UnixNano() {
		return inventory.File{}, false
	}
	h, err := owner.Open(filepath.Join(dir, name))
	if err != nil {
		return inventory.File{}, false
	}
	defer h.Close()
	if uint64(h.Stat.Dev) != f.Dev || h.Stat.Ino != f.Ino || owner.Birth(h) != f.Birth {
		return inventory.File{}, false
	}
	if w.bootTime == 0 {
		w.bootTime = remembered.BootTime()
	}
	o, ok := remembered.Label(h.ProcPath(), w.bootTime)
	if !ok {
		return inventory.File{}, false
	}
	prev := f
	prev.UID, prev.GID = o.UID, o.GID
	if w.qemuOwned(prev) {
		return inventory.File{}, false
	}
	return prev, true
}

// flush asks the journal about the candidates and writes what it does not
// know into labelled.json.
func (w *Watcher) flush() error {
	if len(w.candidates) > 0 {
		var fs []inventory.File
		for _, f := range w.candidates {
			fs = append(fs, f)
		}
		// Files a prepare gave QEMU are the journal's: no need to ask.
		held := map[string]bool{}
		for _, r := range w.recs {
			for _, p := range r.Held {
				held[p] = true
			}
		}
		var ask []inventory.File
		for _, f := range fs {
			if !held[f.Path()] {
				ask = append(ask, f)
			}
		}
		fs = ask
		var known []bool
		if w.Known != nil && len(fs) > 0 {
			known = w.Known(fs)
		}
		for i, f := range fs {
			if known != nil && known[i] {
				continue
			}
			if _, ok := w.labelled.Files[f.Path()]; !ok && len(w.labelled.Files) >= inventory.MaxFiles {
				w.Log.Warnf("more than %d labelled files: %s not recorded", inventory.MaxFiles, f.Path())
				continue
			}
			w.labelled.Files[f.Path()] = f
		}
		w.candidates = map[string]inventory.File{}
	}
	return inventory.SaveLabelled(w.StateDir, w.labelled)
}
