package watch

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/remembered"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// Watcher follows the directories of the domains' records in StateDir.
type Watcher struct {
	StateDir string
	Log      logrus.FieldLogger
	// Known reports whether the journal records an inode: those are the
	// journal's to give back, not the watcher's. It is asked in batches,
	// when the watcher writes what it saw.
	Known func(fs []inventory.File) []bool
	// BootID is this boot's id: records of other boots are not followed.
	BootID string
	// Flush is how long changes are gathered before they are written.
	Flush time.Duration
	// DaemonPidFiles are read for libvirt's daemons; nil means
	// DaemonPidFiles.
	DaemonPidFiles []string
	// Ready, when set, is called once the watcher answers handshakes.
	Ready func()

	fan      int
	wake     [2]int                       // a pipe that wakes the reader
	recs     map[string]*inventory.Record // this boot's, by record name
	all      map[string]*inventory.Record // every boot's, by record name: labelled entries they cover are kept
	dirs     map[string]*dir              // by path
	dirByFid map[string]*dir
	files    map[string]*track // by fid key
	bootTime int64
	dirty    time.Time // since when labelled.json is behind, zero when not
	pending  []string  // fid keys labelled since the last flush
	// written is what labelled.json was last written with, by this
	// watcher (nil before its first write), and writtenAt the inode it
	// was written to.
	written   []inventory.File
	writtenAt [2]uint64
	reqs      chan request
	procs     procCache // the reader's: processes judged, see procCache
	// reading is held while the reader reads events: a test holds it to
	// let a process end before its event is read.
	reading sync.Mutex
	quit    atomic.Bool
	done    chan struct{} // closed when Run returns
	// queue is what the reader read and the main loop has yet to handle;
	// queued tells the main loop there is some.
	qmu    sync.Mutex
	queue  []item
	queued chan struct{}
}

// dir is a watched directory.
type dir struct {
	path string
	fd   int // O_RDONLY: the mount for open_by_handle_at, and for scans
	fsid [2]int32
	fid  string
	// since is when it began to be watched (Unix ns): a file born later
	// is new, and everything on it was written since.
	since int64
	// n counts the files followed there, at most inventory.MaxFiles: a
	// user making files by the million costs a bounded watcher.
	n int
}

// track is what the watcher knows of one file: the owner it last saw,
// and, once it became QEMU's, the record of that change.
type track struct {
	dir  *dir
	name string
	seen [2]uint32
	lab  *inventory.File
}

// LockName is the lock a watcher holds while it runs: two watchers of one
// state directory would each write labelled.json over the other's.
const LockName = "watch.lock"

// Run watches until stop is closed, or the state directory is removed.
// It refuses to run beside another watcher of the same state directory.
func (w *Watcher) Run(stop <-chan struct{}) error {
	if err := inventory.MakeDir(w.StateDir); err != nil {
		return err
	}
	lfd, err := unix.Open(filepath.Join(w.StateDir, LockName), unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("watcher lock: %w", err)
	}
	defer func() { _ = unix.Close(lfd) }() // the lock goes with it
	if err := unix.Flock(lfd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("another watcher runs for %s: %w", w.StateDir, err)
	}
	if err := w.setup(); err != nil {
		return err
	}
	defer w.teardown()
	ln, err := listen(w.StateDir)
	if err != nil {
		return err
	}
	defer func() { _ = ln.Close() }()
	go w.serve(ln)
	barrier := make(chan chan struct{}, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		w.reader(barrier)
	}()
	defer func() {
		w.quit.Store(true)
		close(w.done)
		w.poke() // the reader sees quit and leaves
		<-readerDone
	}()
	if w.Ready != nil {
		w.Ready()
	}
	relist := time.NewTicker(10 * time.Second)
	defer relist.Stop()
	var flushAt <-chan time.Time
	for {
		if !w.dirty.IsZero() && flushAt == nil {
			flushAt = time.After(w.Flush)
		}
		select {
		case <-stop:
			return w.flush()
		case <-w.queued:
			w.consume()
		case req := <-w.reqs:
			w.settle(barrier)
			w.answer(req)
		case <-relist.C:
			// A release whose handshake never reached the watcher still
			// ends its domain's watch here.
			if !w.stateDirThere() {
				w.Log.Info("state directory removed: watcher leaves")
				return nil
			}
			w.reload()
		case <-flushAt:
			flushAt = nil
			if err := w.flush(); err != nil {
				w.Log.WithError(err).Warn("labelled files not written")
			}
		}
	}
}

// reader reads events as soon as the kernel queues them, on a thread of
// its own scheduled ahead of ordinary processes (SCHED_FIFO, else the
// highest nice level), and takes the evidence of who made each change
// then: a fork of libvirt's daemon lives only for its chowns, and is
// reaped a moment later. Batches go to a queue the main loop empties, so
// a busy main loop never delays a read; a barrier is put in the queue
// once everything the kernel had queued before it is read.
func (w *Watcher) reader(barrier <-chan chan struct{}) {
	runtime.LockOSThread() // never unlocked: the thread ends with the reader
	defer w.procs.clear()
	if err := schedFIFO(); err != nil {
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), -20)
	}
	buf := make([]byte, 256<<10)
	for !w.quit.Load() {
		fds := []unix.PollFd{{Fd: int32(w.fan), Events: unix.POLLIN}, {Fd: int32(w.wake[0]), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			w.Log.WithError(err).Error("poll: watcher stops reading events")
			return
		}
		if fds[1].Revents&unix.POLLIN != 0 {
			var b [64]byte
			_, _ = unix.Read(w.wake[0], b[:])
		}
		if err := w.readAll(buf); err != nil {
			// Never spin at real-time priority on a descriptor that keeps
			// failing.
			w.Log.WithError(err).Warn("reading fanotify events")
			time.Sleep(100 * time.Millisecond)
		}
		select {
		case ack := <-barrier:
			// Whatever was queued before the barrier was asked for.
			_ = w.readAll(buf) // an error is logged at the next read
			w.push(item{ack: ack})
		default:
		}
	}
}

// schedFIFO puts the calling thread in the lowest real-time priority: it
// runs as soon as an event wakes it, ahead of every ordinary process,
// and the kernel's real-time throttling still leaves the host its share.
func schedFIFO() error {
	param := struct{ prio int32 }{1}
	if _, _, e := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, uintptr(unix.Gettid()), 1 /* SCHED_FIFO */, uintptr(unsafe.Pointer(&param))); e != 0 {
		return e
	}
	return nil
}

// item is what the reader queues: a batch of events, or a barrier's
// answer.
type item struct {
	evs []event
	ack chan struct{}
}

func (w *Watcher) push(it item) {
	w.qmu.Lock()
	w.queue = append(w.queue, it)
	w.qmu.Unlock()
	select {
	case w.queued <- struct{}{}:
	default: // the main loop is told already
	}
}

// consume handles everything queued, in order.
func (w *Watcher) consume() {
	w.qmu.Lock()
	items := w.queue
	w.queue = nil
	w.qmu.Unlock()
	for _, it := range items {
		if it.ack != nil {
			close(it.ack)
			continue
		}
		w.handleAll(it.evs)
	}
}

// readAll reads until the kernel's queue is empty, queuing each batch;
// an error is one other than that.
func (w *Watcher) readAll(buf []byte) error {
	w.reading.Lock()
	defer w.reading.Unlock()
	for {
		n, err := unix.Read(w.fan, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || (err == nil && n <= 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read fanotify events: %w", err)
		}
		evs := parse(buf[:n])
		w.witness(evs)
		w.push(item{evs: evs})
	}
}

// settle returns once every event queued before it is handled.
func (w *Watcher) settle(barrier chan<- chan struct{}) {
	ack := make(chan struct{})
	barrier <- ack // room for one: only this loop asks, and waits
	w.poke()
	for {
		<-w.queued
		w.consume()
		select {
		case <-ack:
			return
		default:
		}
	}
}

func (w *Watcher) handleAll(evs []event) {
	for _, ev := range evs {
		w.handle(ev)
	}
}

func (w *Watcher) stateDirThere() bool {
	var st unix.Stat_t
	return unix.Lstat(filepath.Join(w.StateDir, "inventory"), &st) == nil
}

func (w *Watcher) setup() error {
	fan, err := fanInit()
	if err != nil {
		return err
	}
	w.fan = fan
	if err := unix.Pipe2(w.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		_ = unix.Close(fan)
		return fmt.Errorf("pipe: %w", err)
	}
	w.recs, w.all = map[string]*inventory.Record{}, map[string]*inventory.Record{}
	w.dirs, w.dirByFid = map[string]*dir{}, map[string]*dir{}
	w.files = map[string]*track{}
	w.procs = procCache{}
	w.reqs = make(chan request)
	w.done = make(chan struct{})
	w.queued = make(chan struct{}, 1)
	if w.Flush <= 0 {
		w.Flush = 50 * time.Millisecond
	}
	w.reload()
	w.loadLabelled()
	return nil
}

func (w *Watcher) teardown() {
	for _, d := range w.dirs {
		_ = unix.Close(d.fd)
	}
	_ = unix.Close(w.fan)
	_ = unix.Close(w.wake[0])
	_ = unix.Close(w.wake[1])
}

// poke wakes the loop.
func (w *Watcher) poke() { _, _ = unix.Write(w.wake[1], []byte{1}) }

// reload reads every record and watches exactly this boot's records'
// directories. A damaged record is logged and skipped.
func (w *Watcher) reload() {
	all, err := inventory.List(w.StateDir)
	if err != nil {
		w.Log.WithError(err).Warn("record unreadable: skipped")
	}
	w.all, w.recs = map[string]*inventory.Record{}, map[string]*inventory.Record{}
	for _, r := range all {
		w.take(inventory.NameOf(r.Domain), r)
	}
	w.settleRecords()
}

// reloadOne reads the one record a handshake names again: a boot storm's
// prepares each cost the watcher one record read, not all of them.
func (w *Watcher) reloadOne(name string) {
	r, err := inventory.LoadName(w.StateDir, name)
	if err != nil {
		w.Log.WithError(err).Warn("record unreadable: skipped")
	}
	delete(w.all, name)
	delete(w.recs, name)
	w.take(name, r)
	w.settleRecords()
}

func (w *Watcher) take(name string, r *inventory.Record) {
	if r == nil {
		return
	}
	w.all[name] = r
	if w.BootID == "" || r.BootID == w.BootID {
		w.recs[name] = r
	}
}

// settleRecords watches what the records name now, and drops what they no
// longer cover.
func (w *Watcher) settleRecords() {
	w.rewatch()
	// What no record covers any more was given back, or left, by its
	// domain's release or a restore.
	for k, t := range w.files {
		if t.lab != nil && !w.covered(t.lab.Dir) {
			t.lab = nil
			w.markDirty()
			if t.dir == nil {
				delete(w.files, k)
			}
		}
	}
}

// rewatch watches the directories of the records, reading each newly
// watched one once for the owners its files have now; what is known of
// files already followed is never forgotten while their directory is.
func (w *Watcher) rewatch() {
	want := map[string]bool{}
	for _, r := range w.recs {
		for _, d := range r.Dirs {
			want[d] = true
		}
	}
	for p, d := range w.dirs {
		if !want[p] {
			w.unwatch(d)
		}
	}
	for p := range want {
		if _, ok := w.dirs[p]; !ok {
			if err := w.watch(p); err != nil {
				w.Log.WithField("dir", p).WithError(err).Warn("directory not followed: files libvirt labels there keep the owner libvirt leaves")
			}
		}
	}
}

func (w *Watcher) watch(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // made later: a new prepare or a reload watches it
		}
		return err
	}
	fsid, err := fsidOf(fd)
	if err == nil {
		var f fid
		if f, err = fidOf(fd, "", fsid); err == nil {
			d := &dir{path: p, fd: fd, fsid: fsid, fid: f.key(), since: time.Now().UnixNano()}
			if err = markDir(w.fan, fd); err == nil {
				w.dirs[p], w.dirByFid[d.fid] = d, d
				w.scan(d)
				return nil
			}
		}
	}
	_ = unix.Close(fd)
	return err
}

func (w *Watcher) unwatch(d *dir) {
	delete(w.dirs, d.path)
	// Another path of the records may name the same directory (a bind
	// mount, a symlink on the way): its mark is theirs too.
	var same *dir
	for _, o := range w.dirs {
		if o.fid == d.fid {
			same = o
		}
	}
	if same == nil {
		unmarkDir(w.fan, d.fd)
		delete(w.dirByFid, d.fid)
	} else {
		w.dirByFid[d.fid] = same
	}
	for k, t := range w.files {
		if t.dir == d && (t.lab == nil || !w.covered(t.lab.Dir)) {
			if t.lab != nil {
				w.markDirty()
			}
			delete(w.files, k)
		}
	}
	_ = unix.Close(d.fd)
}

// covered reports whether a record of any boot names dir: labelled
// entries there are kept for its release or a restore.
func (w *Watcher) covered(dir string) bool {
	for _, r := range w.all {
		if r.Covers(dir) {
			return true
		}
	}
	return false
}

// scan reads the owners d's files have now, for files not yet followed.
func (w *Watcher) scan(d *dir) {
	n := 0
	for _, name := range inventory.Names(d.path) {
		if n >= inventory.MaxFiles {
			w.Log.WithField("dir", d.path).Warnf("more than %d files: owners of the rest are not followed", inventory.MaxFiles)
			return
		}
		var st unix.Stat_t
		if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || !followed(st.Mode) {
			continue
		}
		f, err := fidOf(d.fd, name, d.fsid)
		if err != nil {
			continue
		}
		n++
		k := f.key()
		if _, ok := w.files[k]; ok || w.qemuOwned(st.Uid, st.Gid) {
			continue // known already; or QEMU's, its owner before unknown
		}
		w.follow(k, &track{dir: d, name: name, seen: [2]uint32{st.Uid, st.Gid}})
	}
}

// follow starts following a file, within its directory's bound.
func (w *Watcher) follow(k string, t *track) bool {
	if t.dir.n >= inventory.MaxFiles {
		if t.dir.n == inventory.MaxFiles {
			w.Log.WithField("dir", t.dir.path).Warnf("more than %d files: owners of the rest are not followed", inventory.MaxFiles)
			t.dir.n++
		}
		return false
	}
	t.dir.n++
	w.files[k] = t
	return true
}

// forget stops following a file.
func (w *Watcher) forget(k string) {
	if t := w.files[k]; t != nil && t.dir != nil && t.dir.n > 0 && t.dir.n <= inventory.MaxFiles {
		t.dir.n--
	}
	delete(w.files, k)
}

// followed: regular files and device nodes, what libvirt labels.
func followed(mode uint32) bool {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFBLK, unix.S_IFCHR:
		return true
	}
	return false
}

// qemuOwned reports whether uid:gid is the QEMU owner of a record.
func (w *Watcher) qemuOwned(uid, gid uint32) bool {
	for _, r := range w.recs {
		if uid == r.QEMUUID && gid == r.QEMUGID {
			return true
		}
	}
	return false
}

// loadLabelled takes up what an earlier run of the watcher recorded.
func (w *Watcher) loadLabelled() {
	l, err := inventory.LoadLabelled(w.StateDir)
	if err != nil {
		w.Log.WithError(err).Warn("labelled files unreadable: starting afresh")
	}
	for i := range l.Files {
		f := l.Files[i]
		d := w.dirs[f.Dir]
		fsid := [2]int32{}
		if d != nil {
			fsid = d.fsid
		} else if fd, err := unix.Open(f.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
			fsid, _ = fsidOf(fd)
			_ = unix.Close(fd)
		}
		k := fid{fsid: fsid, typ: f.ID.HandleType, handle: f.ID.Handle}.key()
		t := &track{dir: d, name: filepath.Base(f.Path), seen: [2]uint32{f.UID, f.GID}, lab: &f}
		if h, err := owner.OpenByIdentity(f.ID, f.Path); err == nil {
			uid, gid := h.Owner()
			t.seen = [2]uint32{uid, gid}
			_ = h.Close()
		}
		w.files[k] = t
	}
}

// handle is one event: see doc.go for what counts as libvirt's label.
func (w *Watcher) handle(ev event) {
	if ev.mask&unix.FAN_Q_OVERFLOW != 0 {
		// Not expected with an unlimited queue; what is known is kept.
		w.Log.Warn("fanotify queue overflowed: owners set in that moment are not recorded")
		return
	}
	if ev.mask&unix.FAN_ONDIR != 0 || !ev.hasObj {
		return
	}
	k := ev.obj.key()
	t := w.files[k]
	var d *dir
	if ev.hasDir {
		d = w.dirByFid[ev.dir.key()]
	}
	if d == nil && t != nil && t.dir != nil && w.dirs[t.dir.path] == t.dir {
		d = t.dir // moved out of a watched directory, followed still
	}
	if d == nil {
		return
	}
	p := filepath.Join(d.path, ev.name)
	if ev.name == "" && t != nil {
		p = filepath.Join(d.path, t.name)
	}
	h, err := owner.OpenHandleAt(d.fd, ev.obj.typ, ev.obj.handle, p)
	if err != nil {
		if t != nil && t.lab == nil {
			w.forget(k) // gone
		}
		return
	}
	defer func() { _ = h.Close() }()
	if !followed(h.Stat.Mode) {
		return
	}
	cur := [2]uint32{h.Stat.Uid, h.Stat.Gid}
	if t != nil && cur == t.seen {
		return // no owner change (a chmod, an xattr, a rename)
	}
	log := w.Log.WithField("path", p).WithField("by", ev.who.Who)
	if t == nil {
		if t = w.newFile(k, d, h, ev, log); t == nil {
			return
		}
	}
	w.judge(k, t, d, h, ev.who, log)
}

// newFile starts following a file first seen now: with its owner, unless
// that is QEMU's already; then only libvirt's remembered owner of a new
// file it labelled can say what it was before.
func (w *Watcher) newFile(k string, d *dir, h *owner.Handle, ev event, log logrus.FieldLogger) *track {
	cur := [2]uint32{h.Stat.Uid, h.Stat.Gid}
	if !w.qemuOwned(cur[0], cur[1]) {
		if ev.hasDir && ev.name != "" {
			w.follow(k, &track{dir: d, name: ev.name, seen: cur})
		}
		return nil
	}
	if !ev.who.Libvirt {
		// QEMU's from the start, or by someone else's hand (a cp -a of a
		// file libvirt labelled, xattrs and all): followed as QEMU's, so
		// that libvirt labelling it later cannot lend it the owner the
		// copied xattr names.
		w.follow(k, &track{dir: d, name: ev.name, seen: cur})
		return nil
	}
	prev, ok := w.remembered(d, h)
	if !ok {
		log.Debug("new file labelled by libvirt, its owner before unknown: it keeps the owner libvirt leaves")
		return nil
	}
	t := &track{dir: d, name: ev.name, seen: prev}
	if !w.follow(k, t) {
		return nil
	}
	return t
}

// judge is an owner change of a followed file, by c.
func (w *Watcher) judge(k string, t *track, d *dir, h *owner.Handle, c Changer, log logrus.FieldLogger) {
	cur := [2]uint32{h.Stat.Uid, h.Stat.Gid}
	rootNow := cur == [2]uint32{0, 0}
	switch {
	case t.lab == nil && w.qemuOwned(cur[0], cur[1]):
		f, err := inventory.Identify(h, d.path)
		if err != nil {
			log.WithError(err).Warn("identity unreadable: the file keeps the owner libvirt leaves")
			break
		}
		f.UID, f.GID, f.Proven, f.By = t.seen[0], t.seen[1], c.Libvirt, c.Who
		t.lab = &f
		w.pending = append(w.pending, k)
		w.markDirty()
		if c.Libvirt {
			log.WithField("from", fmt.Sprintf("%d:%d", f.UID, f.GID)).Info("libvirt labelled a file during the run")
		} else {
			log.Info("a file became QEMU's, not by libvirt's hand: left as it is")
		}
	case t.lab != nil && cur == [2]uint32{t.lab.UID, t.lab.GID}:
		t.lab = nil // given back
		w.markDirty()
	case t.lab != nil && c.Libvirt && (w.qemuOwned(cur[0], cur[1]) || rootNow):
		// libvirt's relabel, or its "restore" to root:root: the owner
		// before stays the one recorded.
	case t.lab != nil:
		// Someone else gave it another owner on purpose: theirs now.
		log.Info("a file libvirt labelled was given another owner: no longer given back")
		t.lab = nil
		w.markDirty()
	}
	t.seen = cur
}

func (w *Watcher) markDirty() {
	if w.dirty.IsZero() {
		w.dirty = time.Now()
	}
}

// remembered is the owner a file the watcher first sees labelled had
// before, as libvirt's remember_owner xattr says: libvirt creates the
// files of live operations (snapshot overlays, copy targets) and labels
// them a moment later. Trusted only on a file born since its directory
// is watched, with libvirt's stamp of this boot, read from the inode
// held; a remembered owner that is QEMU's says nothing (libvirt moves
// the old top's label onto a snapshot overlay).
func (w *Watcher) remembered(d *dir, h *owner.Handle) ([2]uint32, bool) {
	b := owner.Birth(h)
	if b == 0 || b < d.since || b > time.Now().UnixNano() {
		return [2]uint32{}, false
	}
	if w.bootTime == 0 {
		w.bootTime = remembered.BootTime()
	}
	o, ok := remembered.Label(h.ProcPath(), w.bootTime)
	if !ok || w.qemuOwned(o.UID, o.GID) {
		return [2]uint32{}, false
	}
	return [2]uint32{o.UID, o.GID}, true
}

// flush asks the journal about the files labelled since the last flush
// and writes labelled.json.
func (w *Watcher) flush() error {
	if len(w.pending) > 0 {
		held := map[string]bool{}
		for _, r := range w.recs {
			for _, p := range r.Held {
				held[p] = true
			}
		}
		var ask []inventory.File
		var keys []string
		for _, k := range w.pending {
			if t := w.files[k]; t != nil && t.lab != nil {
				if held[t.lab.Path] {
					t.lab = nil // prepare gave it to QEMU: the journal's
					continue
				}
				ask, keys = append(ask, *t.lab), append(keys, k)
			}
		}
		if w.Known != nil && len(ask) > 0 {
			if known := w.Known(ask); known != nil {
				for i, k := range keys {
					if known[i] {
						w.files[k].lab = nil
					}
				}
			}
		}
		w.pending = nil
	}
	l := &inventory.Labelled{Files: []inventory.File{}}
	for _, k := range slices.Sorted(maps.Keys(w.files)) {
		if t := w.files[k]; t.lab != nil && len(l.Files) < inventory.MaxFiles {
			l.Files = append(l.Files, *t.lab)
		}
	}
	w.dirty = time.Time{}
	// Most flushes follow the hook's own chowns, which change nothing
	// here: the file already says it, and a durable write is what each
	// handshake of a release would wait for.
	if w.written != nil && reflect.DeepEqual(w.written, l.Files) {
		if dev, ino, ok := inventory.LabelledInode(w.StateDir); ok && [2]uint64{dev, ino} == w.writtenAt {
			return nil
		}
	}
	if err := inventory.SaveLabelled(w.StateDir, l); err != nil {
		return err
	}
	w.written = nil
	if dev, ino, ok := inventory.LabelledInode(w.StateDir); ok {
		w.written, w.writtenAt = l.Files, [2]uint64{dev, ino}
	}
	return nil
}
