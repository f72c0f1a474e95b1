package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"
)

// ErrLockTimeout is wrapped when another hook holds the lock too long.
var ErrLockTimeout = errors.New("timed out waiting for the state lock")

const (
	stateName = "state.json"
	lockName  = "lock"
)

// Store is the state directory.
type Store struct {
	Dir string
	// BootID is the current boot's id; tests set another to simulate a
	// reboot. Empty means read /proc/sys/kernel/random/boot_id.
	BootID string
	// LockTimeout bounds the wait for the lock.
	LockTimeout time.Duration
	lockFd      int
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

// CurrentBootID reads the kernel's boot id.
func CurrentBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Lock takes the exclusive lock, waiting at most LockTimeout. The lock is a
// flock on a file in the state directory, so it is released by the kernel
// if the process dies.
func (s *Store) Lock() error {
	fd, err := unix.Open(filepath.Join(s.Dir, lockName), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("open lock in %s: %w", s.Dir, err)
	}
	deadline := time.Now().Add(s.LockTimeout)
	wait := 200 * time.Microsecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			s.lockFd = fd
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			unix.Close(fd)
			return fmt.Errorf("lock %s: %w", s.Dir, err)
		}
		if time.Now().After(deadline) {
			unix.Close(fd)
			return fmt.Errorf("%w in %s after %s: another hook is still running (see `libvirt-dac-hook status`)", ErrLockTimeout, s.Dir, s.LockTimeout)
		}
		time.Sleep(wait)
		if wait < 20*time.Millisecond {
			wait *= 2
		}
	}
}

// Unlock releases the lock.
func (s *Store) Unlock() {
	if s.lockFd >= 0 {
		unix.Close(s.lockFd)
		s.lockFd = -1
	}
}

// Load reads the state. A missing file is an empty state. A damaged file
// is moved aside (kept for inspection, never deleted) and ErrDamaged is
// returned naming where it went.
func (s *Store) Load() (*State, error) {
	p := filepath.Join(s.Dir, stateName)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		st := &State{Version: FormatVersion}
		st.reindex()
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	st, err := Decode(b)
	if err != nil {
		aside := fmt.Sprintf("%s.damaged-%s", p, time.Now().UTC().Format("20060102T150405.000000000"))
		if rerr := os.Rename(p, aside); rerr != nil {
			return nil, fmt.Errorf("%s: %w (and could not move it aside: %v)", p, err, rerr)
		}
		return nil, fmt.Errorf("%s: %w; moved to %s for inspection: `libvirt-dac-hook status --state-file %s` shows what it held", p, err, aside, aside)
	}
	return st, nil
}

// LoadFile reads a state file without locking or moving it (for status and
// restore of a file kept aside).
func LoadFile(p string) (*State, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	st, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return st, nil
}

// Save replaces the state durably: the new content is fsynced, renamed over
// the old one, and the directory fsynced, so after Save returns a crash
// leaves either the new state or (before) the old one, never a mix.
func (s *Store) Save(st *State) error {
	b, err := st.Encode()
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	p := filepath.Join(s.Dir, stateName)
	if err := renameio.WriteFile(p, b, 0o600, renameio.WithTempDir(s.Dir)); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	// The rename is only durable once the directory is.
	dfd, err := unix.Open(s.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.Dir, err)
	}
	defer unix.Close(dfd)
	if err := unix.Fsync(dfd); err != nil {
		return fmt.Errorf("fsync %s: %w", s.Dir, err)
	}
	return nil
}

// Damaged lists state files kept aside as damaged and not yet dealt with
// (restored from, or removed, by the admin).
func (s *Store) Damaged() []string {
	m, _ := filepath.Glob(filepath.Join(s.Dir, stateName+".damaged-*"))
	var out []string
	for _, p := range m {
		if !strings.HasSuffix(p, RestoredSuffix) {
			out = append(out, p)
		}
	}
	return out
}

// RestoredSuffix marks a damaged state file whose owners were given back.
const RestoredSuffix = ".restored"
