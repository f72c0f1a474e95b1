package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"
)

const (
	// dbName is the journal database.
	dbName = "state.db"
	// stateName is the whole-state JSON file of earlier versions, imported
	// into the database by the first Load and then renamed with
	// MigratedSuffix.
	stateName = "state.json"
	lockName  = "lock"
)

// MigratedSuffix marks a state.json whose entries were imported into the
// journal database.
const MigratedSuffix = ".migrated"

// LoadFileTimeout bounds how long LoadFile waits for a hook that has the
// live journal open.
const LoadFileTimeout = 10 * time.Second

// Store is the state directory.
type Store struct {
	Dir string
	// BootID is the current boot's id; tests set another to simulate a
	// reboot. Empty means read /proc/sys/kernel/random/boot_id.
	BootID string
	// LockTimeout bounds the wait for the lock.
	LockTimeout time.Duration
	lockFd      int
	db          *bolt.DB
	rtx         *bolt.Tx // see view
}

// Open prepares a Store for dir, creating dir (0700) if needed.
func Open(dir string, timeout time.Duration) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	boot, err := CurrentBootID()
	if err != nil {
		return nil, err
	}
	return &Store{Dir: dir, BootID: boot, LockTimeout: timeout, lockFd: -1}, nil
}

// StatePath is the journal database of state directory dir.
func StatePath(dir string) string { return filepath.Join(dir, dbName) }

// CurrentBootID reads the kernel's boot id.
func CurrentBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Load opens the journal for this call (cheaply: entries are read only
// when a query returns them; see State). Called with the lock held, the
// journal stays open until Unlock. Called without it, Load gives a
// read-only view, for checks that change nothing: each query reads the
// journal as it is then, and Save refuses the state.
//
// Load also removes temporary files a killed writer left, and imports a
// state.json of an earlier version once. A damaged journal is moved aside
// (kept for inspection, never deleted) and ErrDamaged is returned naming
// where it went; the next Load starts an empty journal.
func (s *Store) Load() (*State, error) {
	if s.lockFd < 0 && s.db == nil {
		// Without the lock: a read-only view, which opens the journal
		// read-only for each query, so nothing stays open (and locked)
		// after the caller is done with it. Save refuses it. A state.json
		// not imported yet is read whole; only a call under the lock
		// imports it or moves it aside.
		old := filepath.Join(s.Dir, stateName)
		if _, err := os.Stat(old); err == nil {
			return LoadFile(old)
		}
		return &State{Version: FormatVersion, store: s, fam: &family{base: map[string][]byte{}}, slots: map[string]*Entry{}, readOnly: true}, nil
	}
	s.removeDebris()
	if err := s.openDB(); err != nil {
		return nil, err
	}
	if err := s.migrate(); err != nil {
		return nil, err
	}
	return &State{Version: FormatVersion, store: s, fam: &family{base: map[string][]byte{}}, slots: map[string]*Entry{}}, nil
}

// removeDebris deletes temporary files of writers killed mid-write: only
// a writer holding the lock creates them, and we hold it now.
func (s *Store) removeDebris() {
	m, _ := filepath.Glob(filepath.Join(s.Dir, "."+stateName+"*"))
	for _, p := range m {
		suffix := strings.TrimPrefix(filepath.Base(p), "."+stateName)
		if _, err := strconv.ParseInt(suffix, 10, 64); err == nil {
			_ = os.Remove(p) // best effort: a leftover is retried next call
		}
	}
}

// openBolt opens the journal database at p with bbolt, never following a
// symlink. A panic of bbolt's on a damaged file (a page of a type it does
// not expect, a fault reading a page the file lacks) is ErrDamaged, and
// the file bbolt opened is closed, so its flock does not outlive the
// failed open.
func openBolt(p string, readOnly bool, timeout time.Duration) (db *bolt.DB, err error) {
	var opened []*os.File
	defer func() {
		if r := recover(); r != nil {
			for _, f := range opened {
				_ = f.Close() // nothing was written through it
			}
			db, err = nil, fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprint(r))
		}
	}()
	defer withFaults()()
	open := func(p string, flag int, mode os.FileMode) (*os.File, error) {
		if readOnly {
			flag = os.O_RDONLY
		}
		f, err := os.OpenFile(p, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		if err == nil {
			opened = append(opened, f)
		}
		return f, err
	}
	return bolt.Open(p, 0o600, &bolt.Options{ReadOnly: readOnly, Timeout: timeout, OpenFile: open})
}

func boltTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Nanosecond // one try
	}
	return d
}

func (s *Store) openDB() (err error) {
	if s.db != nil {
		return nil
	}
	p := StatePath(s.Dir)
	defer func() {
		if r := recover(); r != nil {
			err = s.setAside(fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprint(r)))
		}
	}()
	defer withFaults()()
	if err := checkPath(p); err != nil {
		if errors.Is(err, ErrDamaged) {
			return s.setAside(err)
		}
		return err
	}
	db, err := openBolt(p, false, boltTimeout(s.LockTimeout))
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w: %s is open elsewhere (a `status` reading it?): %w", ErrLockTimeout, p, err)
	}
	if err != nil {
		if isDamage(err) {
			return s.setAside(asDamage(err))
		}
		return fmt.Errorf("open %s: %w", p, err)
	}
	s.db = db
	// A read transaction checks an existing journal: a write one would
	// cost every hook call a commit and its fsyncs.
	fresh := false
	check := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil && !tx.Writable() {
			fresh = true
			return nil
		}
		if meta == nil {
			for _, name := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(metaVersion, be64(FormatVersion))
		}
		v := meta.Get(metaVersion)
		if len(v) != 8 || binary.BigEndian.Uint64(v) != FormatVersion {
			return fmt.Errorf("%w: journal version %x, this hook understands %d", ErrDamaged, v, FormatVersion)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: journal has no %s bucket", ErrDamaged, name)
			}
		}
		return nil
	}
	err = db.View(check)
	if err == nil && fresh {
		err = db.Update(check)
	}
	if err != nil {
		if errors.Is(err, ErrDamaged) {
			return s.setAside(err)
		}
		s.closeDB()
		return fmt.Errorf("open %s: %w", p, err)
	}
	return nil
}

// asDamage is err as ErrDamaged.
func asDamage(err error) error {
	if errors.Is(err, ErrDamaged) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrDamaged, err)
}

func isDamage(err error) bool {
	return errors.Is(err, ErrDamaged) || errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrInvalidMapping)
}

func (s *Store) closeDB() {
	s.endRead()
	if s.db != nil {
		// Close only unmaps and unlocks: every write was committed
		// (and fsynced) by its own transaction.
		_ = s.db.Close()
		s.db = nil
	}
}

// setAside moves the damaged journal out of the way, keeping it for
// inspection and restore, and returns cause naming where it went.
func (s *Store) setAside(cause error) error {
	s.closeDB()
	p := StatePath(s.Dir)
	aside := fmt.Sprintf("%s.damaged-%s", p, time.Now().UTC().Format("20060102T150405.000000000"))
	if err := os.Rename(p, aside); err != nil {
		return fmt.Errorf("%s: %w (and could not move it aside: %w)", p, cause, err)
	}
	if err := syncDir(s.Dir); err != nil {
		return fmt.Errorf("%s: %w (moved to %s, but: %w)", p, cause, aside, err)
	}
	return fmt.Errorf("%s: %w; moved to %s for inspection: `libvirt-dac-hook status --state-file %s` shows what it held", p, cause, aside, aside)
}

// migrate imports a state.json of an earlier version in one transaction,
// then renames it. A crash between the two imports it again next time,
// which writes the same entries.
func (s *Store) migrate() error {
	p := filepath.Join(s.Dir, stateName)
	// Never through a symlink: what it imports, release gives back.
	b, err := readNoFollow(p, MaxStateSize+1)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var st *State
	if err != nil {
		// A symlink or something else than a file at state.json is
		// damage too: kept aside, prepares refused until it is dealt with.
		err = fmt.Errorf("%w: read %s: %w", ErrDamaged, p, err)
	} else {
		st, err = Decode(b)
	}
	if err != nil {
		aside := fmt.Sprintf("%s.damaged-%s", p, time.Now().UTC().Format("20060102T150405.000000000"))
		if rerr := os.Rename(p, aside); rerr != nil {
			return fmt.Errorf("%s: %w (and could not move it aside: %w)", p, err, rerr)
		}
		return fmt.Errorf("%s: %w; moved to %s for inspection: `libvirt-dac-hook status --state-file %s` shows what it held", p, err, aside, aside)
	}
	err = s.update(func(tx *bolt.Tx) error {
		for _, e := range st.mem {
			if err := putEntry(tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import %s: %w", p, err)
	}
	if err := os.Rename(p, p+MigratedSuffix); err != nil {
		return fmt.Errorf("imported %s, but: %w", p, err)
	}
	return syncDir(s.Dir)
}

// putEntry writes e over whatever its key holds.
func putEntry(tx *bolt.Tx, e *Entry) error {
	key := e.Key()
	enc, err := encodeEntry(e)
	if err != nil {
		return err
	}
	var old *Entry
	if cur := tx.Bucket(bucketEntries).Get([]byte(key)); cur != nil {
		if old, err = decodeEntry(cur); err != nil {
			return fmt.Errorf("entry %q: %w", key, err)
		}
	}
	return writeEntry(tx, key, old, e, enc)
}

func syncDir(dir string) error {
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer closeFd(dfd)
	if err := unix.Fsync(dfd); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// view runs f in a read transaction; a panic of the database on a
// corrupt page becomes ErrDamaged.
//
// One read transaction serves every query between two writes: a prepare
// looks up each of its files, and beginning a transaction for each cost
// more than the lookups. It is closed before every write and at Unlock,
// because the database cannot grow its mapping while one is open.
func (s *Store) view(f func(*reader)) (err error) {
	if s.db == nil {
		return fmt.Errorf("journal %s is not open: Load it under the lock first", s.Dir)
	}
	return s.viewOpen(f)
}

// viewRO runs f on the journal opened read-only for this one call, for a
// State loaded without the lock.
func (s *Store) viewRO(f func(*reader)) (err error) {
	if s.db != nil {
		return s.viewOpen(f)
	}
	p := StatePath(s.Dir)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Size() == 0) {
		// No journal yet, or one a first writer is creating now.
		f(&reader{})
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprint(r))
		}
	}()
	defer withFaults()()
	if err := checkPath(p); err != nil {
		return err
	}
	db, err := openBolt(p, true, boltTimeout(s.LockTimeout))
	if errors.Is(err, fs.ErrNotExist) {
		f(&reader{})
		return nil
	}
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w: %s is held by another hook: %w", ErrLockTimeout, p, err)
	}
	if err != nil {
		if isDamage(err) {
			return fmt.Errorf("%s: %w", p, asDamage(err))
		}
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer func() { _ = db.Close() }() // read-only: nothing to flush
	return db.View(func(tx *bolt.Tx) error {
		f(&reader{tx: tx})
		return nil
	})
}

func (s *Store) viewOpen(f func(*reader)) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.endRead()
			err = fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprint(r))
		}
	}()
	defer withFaults()()
	if s.rtx == nil {
		if s.rtx, err = s.db.Begin(false); err != nil {
			return err
		}
	}
	f(&reader{tx: s.rtx})
	return nil
}

// endRead closes the read transaction view keeps open.
func (s *Store) endRead() {
	if s.rtx != nil {
		_ = s.rtx.Rollback() // a read transaction has nothing to roll back
		s.rtx = nil
	}
}

// errNoChange rolls back a write transaction with nothing to write, so an
// unchanged Save costs no fsync.
var errNoChange = errors.New("no change")

// update runs f in one write transaction, committed with fsync.
func (s *Store) update(f func(*bolt.Tx) error) (err error) {
	if s.db == nil {
		return fmt.Errorf("journal %s is not open: Load it under the lock first", s.Dir)
	}
	s.endRead()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprint(r))
		}
	}()
	defer withFaults()()
	var own error
	err = s.db.Update(func(tx *bolt.Tx) error {
		own = f(tx)
		return own
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil && (own == nil || !errors.Is(err, own)) && !systemError(err) {
		// Not f's, and not the system's (a full disk, an I/O error,
		// which leave the journal as it was): bbolt met pages that do
		// not add up, such as a page number past any offset.
		return asDamage(err)
	}
	return err
}

// systemError reports whether a failed commit is the system's: an errno
// (ENOSPC, EIO, ...), or one of the errors bbolt words around an errno it
// does not wrap (growing or syncing the file).
func systemError(err error) bool {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "file resize error: ") || strings.HasPrefix(msg, "file sync error: ")
}

// Save makes st durable: every entry added, removed or changed since it was
// loaded is written in one transaction, committed with fsync before Save
// returns, so a crash leaves either all of st's changes or none. Saving a
// Clone taken earlier puts back what the entries were then.
//
// A State from Decode or LoadFile replaces the whole journal.
func (s *Store) Save(st *State) error {
	if !st.lazy() {
		return s.saveAll(st)
	}
	if st.store != s {
		return fmt.Errorf("save to %s: the state was loaded from another store", s.Dir)
	}
	if st.damage != nil {
		return s.setAside(st.damage)
	}
	if st.fault != nil {
		return fmt.Errorf("save journal %s: %w", StatePath(s.Dir), st.fault)
	}
	if st.readOnly {
		return fmt.Errorf("save journal %s: the state was loaded without the lock", StatePath(s.Dir))
	}
	err := s.update(func(tx *bolt.Tx) error {
		entries := tx.Bucket(bucketEntries)
		type change struct {
			key  string
			want *Entry
			enc  []byte
		}
		var todo []change
		consider := func(key string, want *Entry, enc []byte) {
			if !bytes.Equal(entries.Get([]byte(key)), enc) {
				todo = append(todo, change{key, want, enc})
			}
		}
		for key, e := range st.slots {
			var enc []byte
			if e != nil {
				if e.Key() != key {
					return fmt.Errorf("entry %s changed its key from %q to %q in place: Remove and Add it instead", e.Path, key, e.Key())
				}
				var err error
				if enc, err = encodeEntry(e); err != nil {
					return err
				}
			}
			consider(key, e, enc)
		}
		for key, b := range st.fam.base {
			if _, ok := st.slots[key]; ok {
				continue
			}
			// Touched by another member of the family only: this state
			// sees it as it was.
			var e *Entry
			if b != nil {
				var err error
				if e, err = decodeEntry(b); err != nil {
					return fmt.Errorf("entry %q: %w", key, err)
				}
			}
			consider(key, e, b)
		}
		if len(todo) == 0 {
			return errNoChange
		}
		if len(todo) > MaxTxEntries {
			return fmt.Errorf("one journal transaction may change at most %d entries, this one %d", MaxTxEntries, len(todo))
		}
		// In key order: the database inserts sorted keys cheaply.
		sort.Slice(todo, func(i, j int) bool { return todo[i].key < todo[j].key })
		for _, c := range todo {
			var old *Entry
			if cur := entries.Get([]byte(c.key)); cur != nil {
				var err error
				if old, err = decodeEntry(cur); err != nil {
					return fmt.Errorf("entry %q: %w", c.key, err)
				}
			}
			if err := writeEntry(tx, c.key, old, c.want, c.enc); err != nil {
				return err
			}
		}
		return nil
	})
	return s.saved(err)
}

// saved is the outcome of a save transaction: a damaged journal is set
// aside, any other error names the journal.
func (s *Store) saved(err error) error {
	if errors.Is(err, ErrDamaged) {
		return s.setAside(err)
	}
	if err != nil {
		return fmt.Errorf("save journal %s: %w", StatePath(s.Dir), err)
	}
	return nil
}

// saveAll makes the journal hold exactly st's entries.
func (s *Store) saveAll(st *State) error {
	if s.db == nil {
		if err := s.openDB(); err != nil {
			return err
		}
	}
	if len(st.mem) > MaxTxEntries {
		return fmt.Errorf("save journal %s: one journal transaction may change at most %d entries, not %d", StatePath(s.Dir), MaxTxEntries, len(st.mem))
	}
	keep := make(map[string]bool, len(st.mem))
	for _, e := range st.mem {
		keep[e.Key()] = true
	}
	err := s.update(func(tx *bolt.Tx) error {
		var gone []string
		c := tx.Bucket(bucketEntries).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if !keep[string(k)] {
				gone = append(gone, string(k))
			}
		}
		for _, k := range gone {
			cur := tx.Bucket(bucketEntries).Get([]byte(k))
			old, err := decodeEntry(cur)
			if err != nil {
				return fmt.Errorf("entry %q: %w", k, err)
			}
			if err := writeEntry(tx, k, old, nil, nil); err != nil {
				return err
			}
		}
		es := append([]*Entry(nil), st.mem...)
		sort.Slice(es, func(i, j int) bool { return es[i].Key() < es[j].Key() })
		for _, e := range es {
			if err := putEntry(tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	return s.saved(err)
}

// boltMagic is how a bbolt file begins (the magic of its first meta page,
// after the 16-byte page header).
var boltMagic = binary.LittleEndian.AppendUint32(nil, 0xED0CDAED)

// LoadFile reads a whole journal into memory without taking the state lock
// or moving anything (for status, and restore of a file kept aside): a
// journal database, a state.json of an earlier version, or a damaged copy
// of either. For callers that name a state directory's state.json, a
// missing state.json next to a journal database reads the database.
func LoadFile(p string) (*State, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) && filepath.Base(p) == stateName {
		if _, serr := os.Stat(StatePath(filepath.Dir(p))); serr == nil {
			return LoadFile(StatePath(filepath.Dir(p)))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if strings.HasPrefix(filepath.Base(p), dbName) {
		return loadDB(p, f)
	}
	head := make([]byte, 20)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		_ = f.Close()
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if n == 20 && bytes.Equal(head[16:], boltMagic) {
		return loadDB(p, f)
	}
	b, err := io.ReadAll(io.LimitReader(io.MultiReader(bytes.NewReader(head[:n]), f), MaxStateSize+1))
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	st, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return st, nil
}

// Salvage reads what a damaged journal database still proves: every entry
// that decodes, and an error wrapping ErrDamaged that names the entries
// that do not (nil when all do). Restoring from a copy set aside can give
// back the owners it proves and leave only the rest to the administrator.
// A file that cannot be opened at all, or a whole-state JSON file, is read
// as LoadFile reads it.
func Salvage(p string) (*State, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	head := make([]byte, 20)
	n, _ := io.ReadFull(f, head)
	if cerr := f.Close(); cerr != nil {
		return nil, fmt.Errorf("read %s: %w", p, cerr)
	}
	if n < 20 || !bytes.Equal(head[16:], boltMagic) {
		return LoadFile(p)
	}
	var bad []string
	st, err := readDB(p, func(key []byte, err error) error {
		bad = append(bad, fmt.Sprintf("%q (%s)", key, err))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return st, fmt.Errorf("%s: %w: %d entries cannot be read: %s", p, ErrDamaged, len(bad), strings.Join(bad, ", "))
	}
	return st, nil
}

// loadDB reads every entry of a journal database, strictly: an entry it
// cannot decode makes the whole file ErrDamaged. It closes f, which it
// first share-locks: a writer creates the file before it locks it and
// writes its first pages, so an empty file under the lock is an empty
// journal, not a damaged one.
func loadDB(p string, f *os.File) (*State, error) {
	return loadDBWith(p, f, func(key []byte, err error) error { return fmt.Errorf("entry %q: %w", key, err) })
}

// readDB is loadDB with onBad deciding about entries that do not decode.
func readDB(p string, onBad func(key []byte, err error) error) (*State, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return loadDBWith(p, f, onBad)
}

func loadDBWith(p string, f *os.File, onBad func(key []byte, err error) error) (st *State, err error) {
	defer func() { _ = f.Close() }() // read only
	// A descriptor of its own for the share lock: flockWait may hand it to
	// an abandoned waiter, which *os.File must never close as well.
	lfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen %s: %w", p, err)
	}
	if err := flockWait(lfd, unix.LOCK_SH, LoadFileTimeout); err != nil {
		if errors.Is(err, ErrLockTimeout) {
			return nil, fmt.Errorf("read %s: %w after %s: a hook keeps it open", p, ErrLockTimeout, LoadFileTimeout)
		}
		closeFd(lfd)
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	defer closeFd(lfd) // drops the share lock
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", p, err)
	}
	if fi.Size() == 0 {
		return &State{Version: FormatVersion}, nil
	}
	defer func() {
		if r := recover(); r != nil {
			st, err = nil, fmt.Errorf("%s: %w: %s", p, ErrDamaged, fmt.Sprint(r))
		}
	}()
	defer withFaults()()
	if err := checkFile(f); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	db, err := openBolt(p, true, LoadFileTimeout)
	if err != nil {
		if isDamage(err) {
			return nil, fmt.Errorf("%s: %w", p, asDamage(err))
		}
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	defer func() { _ = db.Close() }() // read-only: nothing to flush
	out := &State{Version: FormatVersion}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		if b == nil {
			return fmt.Errorf("%w: no entries bucket", ErrDamaged)
		}
		return b.ForEach(func(k, v []byte) error {
			e, err := decodeEntry(v)
			if err == nil && e.Key() != string(k) {
				err = fmt.Errorf("%w: entry %s is stored under key %q, its own is %q", ErrDamaged, e.Path, k, e.Key())
			}
			if err != nil {
				return onBad(k, err)
			}
			out.mem = append(out.mem, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	sortEntries(out.mem)
	out.reindex()
	return out, nil
}

// Damaged lists journals kept aside as damaged and not yet dealt with
// (restored from, or removed, by the admin).
func (s *Store) Damaged() []string {
	var out []string
	for _, name := range []string{stateName, dbName} {
		m, _ := filepath.Glob(filepath.Join(s.Dir, name+".damaged-*"))
		for _, p := range m {
			if !strings.HasSuffix(p, RestoredSuffix) {
				out = append(out, p)
			}
		}
	}
	return out
}

// RestoredSuffix marks a damaged state file whose owners were given back.
const RestoredSuffix = ".restored"
