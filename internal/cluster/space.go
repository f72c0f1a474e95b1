package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Errors of Open, compared with errors.Is.
var (
	// ErrRootSquash: root may not create or write the record directory,
	// as on an NFS export with root_squash.
	ErrRootSquash = errors.New("root cannot write here (an NFS export with root_squash?)")
	// ErrUntrusted: the directory or a file in it is not root's alone, so
	// anyone could have written it.
	ErrUntrusted = errors.New("not root's alone: refused")
	// ErrLockTimeout: another process (on this host or another) held the
	// directory's lock for longer than the timeout.
	ErrLockTimeout = errors.New("timed out waiting for the cluster records lock")
)

const lockName = "lock"

// nobody is the uid NFS servers map a squashed root to (anonuid's
// default).
const nobody = 65534

var errNobody = errors.New("the uid root_squash exports give root's files")

// Space is one record directory, locked by this process from Open to
// Close. POSIX locks belong to the process: a process must open a
// directory once and share the Space (closing any descriptor of the lock
// file would drop the lock).
type Space struct {
	Dir    string
	dirFd  int
	lockFd int
}

// Open opens the record directory dir, creating it (root-only, 0700) when
// absent, checks that only root can write it, and takes its write lock,
// waiting at most timeout (0: fail at once when held).
func Open(dir string, timeout time.Duration) (*Space, error) {
	err := unix.Mkdir(dir, 0o700)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, openErr("create", dir, err)
	}
	created := err == nil
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openErr("open", dir, err)
	}
	s := &Space{Dir: dir, dirFd: fd, lockFd: -1}
	if err := trusted(fd, dir, unix.S_IFDIR); err != nil {
		var st unix.Stat_t
		_ = unix.Fstat(fd, &st)
		s.Close()
		if created || errors.Is(err, errNobody) {
			// Root made it and does not own it: the server maps root to
			// another user (root_squash, all_squash).
			what := "is owned by"
			if created {
				_ = unix.Rmdir(dir)
				what = "was created by root but belongs to"
			}
			return nil, fmt.Errorf("%s %s uid %d: %w", dir, what, st.Uid, ErrRootSquash)
		}
		return nil, err
	}
	lfd, err := unix.Openat(fd, lockName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		s.Close()
		return nil, openErr("create", filepath.Join(dir, lockName), err)
	}
	s.lockFd = lfd
	if err := trusted(lfd, filepath.Join(dir, lockName), unix.S_IFREG); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.lock(timeout); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openErr(what, p string, err error) error {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%s %s: %w: %w", what, p, ErrRootSquash, err)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%s %s: a symlink or not a directory: %w", what, p, ErrUntrusted)
	}
	return fmt.Errorf("%s %s: %w", what, p, err)
}

// trusted checks that fd is of type typ, owned by root, with no group or
// other permissions and, for a file, one link.
func trusted(fd int, p string, typ uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != typ:
		return fmt.Errorf("%s is not a %s: %w", p, typName(typ), ErrUntrusted)
	case st.Uid == nobody:
		return fmt.Errorf("%s is owned by uid %d: %w: %w", p, st.Uid, ErrUntrusted, errNobody)
	case st.Uid != 0:
		return fmt.Errorf("%s is owned by uid %d: %w", p, st.Uid, ErrUntrusted)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("%s has mode %04o (want no group or other access): %w", p, st.Mode&0o7777, ErrUntrusted)
	case typ == unix.S_IFREG && st.Nlink != 1:
		return fmt.Errorf("%s has %d links: %w", p, st.Nlink, ErrUntrusted)
	}
	return nil
}

func typName(typ uint32) string {
	if typ == unix.S_IFDIR {
		return "directory"
	}
	return "regular file"
}

// lockPoll is how often a held lock is tried again. F_SETLKW cannot be
// bounded in time, and a lock held on a shared filesystem is held for the
// few milliseconds of another host's hook call.
const lockPoll = 20 * time.Millisecond

func (s *Space) lock(timeout time.Duration) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.FcntlFlock(uintptr(s.lockFd), unix.F_SETLK, &lk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("lock %s: %w", filepath.Join(s.Dir, lockName), err)
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%s: %w (%s)", s.Dir, ErrLockTimeout, timeout)
		}
		time.Sleep(lockPoll)
	}
}

// Close drops the lock and the directory.
func (s *Space) Close() {
	if s.lockFd >= 0 {
		unix.Close(s.lockFd)
		s.lockFd = -1
	}
	if s.dirFd >= 0 {
		unix.Close(s.dirFd)
		s.dirFd = -1
	}
}

// Get reads the record of path; nil when there is none. A record that
// fails its checks wraps ErrDamaged (and ErrUntrusted when it is not
// root's alone).
func (s *Space) Get(path string) (*Record, error) {
	r, err := s.read(Key(path))
	if r != nil && r.Path != path {
		return nil, fmt.Errorf("%s: %w: names %s", s.name(Key(path)), ErrDamaged, r.Path)
	}
	return r, err
}

func (s *Space) name(key string) string { return filepath.Join(s.Dir, key) }

func (s *Space) read(key string) (*Record, error) {
	fd, err := unix.Openat(s.dirFd, key, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w: %w", s.name(key), ErrDamaged, err)
	}
	f := os.NewFile(uintptr(fd), s.name(key))
	defer func() { _ = f.Close() }() // read-only: nothing to lose
	if err := trusted(fd, s.name(key), unix.S_IFREG); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w: %w", s.name(key), ErrDamaged, err)
	}
	r, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name(key), err)
	}
	return r, nil
}

// Put writes r durably: a crash leaves the record as it was or as r.
func (s *Space) Put(r *Record) error {
	b, err := r.encode()
	if err != nil {
		return err
	}
	key := Key(r.Path)
	tmp := ".tmp-" + key
	// Under the lock a temporary file can only be a killed writer's.
	if err := unix.Unlinkat(s.dirFd, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", s.name(tmp), err)
	}
	fd, err := unix.Openat(s.dirFd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return openErr("create", s.name(tmp), err)
	}
	f := os.NewFile(uintptr(fd), s.name(tmp))
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(s.dirFd, tmp, s.dirFd, key)
	}
	if err != nil {
		_ = unix.Unlinkat(s.dirFd, tmp, 0)
		return fmt.Errorf("write %s: %w", s.name(key), err)
	}
	return s.syncDir()
}

// Remove forgets the record of path durably; no record is not an error.
func (s *Space) Remove(path string) error {
	key := Key(path)
	if err := unix.Unlinkat(s.dirFd, key, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", s.name(key), err)
	}
	return s.syncDir()
}

func (s *Space) syncDir() error {
	if err := unix.Fsync(s.dirFd); err != nil {
		return fmt.Errorf("fsync %s: %w", s.Dir, err)
	}
	return nil
}

// List reads every record of the directory. Records that cannot be read
// are returned as errors, one each, and do not stop the others.
func (s *Space) List() ([]*Record, []error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, []error{fmt.Errorf("read %s: %w", s.Dir, err)}
	}
	var recs []*Record
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !isKey(name) {
			continue
		}
		r, err := s.read(name)
		switch {
		case err != nil:
			errs = append(errs, err)
		case r == nil:
		case Key(r.Path) != name:
			errs = append(errs, fmt.Errorf("%s: %w: names %s", s.name(name), ErrDamaged, r.Path))
		default:
			recs = append(recs, r)
		}
	}
	return recs, errs
}

func isKey(name string) bool {
	hexPart, ok := strings.CutSuffix(name, ".json")
	if !ok || len(hexPart) != 64 {
		return false
	}
	return strings.Trim(hexPart, "0123456789abcdef") == ""
}
