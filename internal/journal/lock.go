package journal

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLockTimeout is wrapped when another hook holds the lock too long.
var ErrLockTimeout = errors.New("timed out waiting for the state lock")

// Lock takes the exclusive lock, waiting at most LockTimeout. The lock is a
// flock on a file in the state directory, so the kernel releases it if the
// process dies. Waiters block in the kernel, which hands the lock over the
// moment it is released, instead of sleeping while it is free.
//
// A waiter that times out leaves its blocked flock behind in a goroutine
// that owns the file descriptor: if that flock is granted later, the
// goroutine closes the descriptor at once, releasing the lock, so a
// timed-out Lock never holds the lock unnoticed.
func (s *Store) Lock() error {
	if s.lockFd >= 0 {
		return fmt.Errorf("lock %s: already held by this store", s.Dir)
	}
	fd, err := unix.Open(filepath.Join(s.Dir, lockName), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("open lock in %s: %w", s.Dir, err)
	}
	switch err := flockWait(fd, unix.LOCK_EX, s.LockTimeout); {
	case err == nil:
		s.lockFd = fd
		return nil
	case errors.Is(err, ErrLockTimeout):
		// fd now belongs to the abandoned waiter.
		return fmt.Errorf("%w in %s after %s: another hook is still running (see `libvirt-dac-hook status`)", ErrLockTimeout, s.Dir, s.LockTimeout)
	default:
		closeFd(fd)
		return fmt.Errorf("lock %s: %w", s.Dir, err)
	}
}

// flockWait takes flock how (LOCK_EX or LOCK_SH) on fd, waiting at most
// timeout. On ErrLockTimeout the caller must not use or close fd again:
// the abandoned waiter owns it and closes it once its flock returns.
func flockWait(fd, how int, timeout time.Duration) error {
	// The uncontended case, and timeout 0, need no goroutine.
	err := flockRetry(fd, how|unix.LOCK_NB)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, unix.EWOULDBLOCK):
		return err
	case timeout <= 0:
		closeFd(fd)
		return ErrLockTimeout
	}
	w := &waiter{done: make(chan error, 1)}
	go w.wait(fd, how)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-w.done:
		return err
	case <-timer.C:
		if w.abandon() {
			return ErrLockTimeout
		}
		// Granted just as the timer fired: the lock is ours.
		return <-w.done
	}
}

// waiter is one blocked flock. Exactly one of "granted to Lock" and
// "abandoned by Lock" happens, decided under mu.
type waiter struct {
	mu        sync.Mutex
	abandoned bool
	settled   bool
	done      chan error
}

func (w *waiter) wait(fd, how int) {
	err := flockRetry(fd, how)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.settled = true
	if w.abandoned {
		// Nobody will use or close fd: closing it releases the lock
		// this late flock may just have been granted.
		closeFd(fd)
		return
	}
	w.done <- err
}

// abandon reports whether the waiter was given up before it settled.
func (w *waiter) abandon() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.settled {
		return false
	}
	w.abandoned = true
	return true
}

func flockRetry(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// closeFd closes a descriptor whose close error carries no information
// worth returning: it was opened for a lock only, and nothing was written.
func closeFd(fd int) {
	_ = unix.Close(fd)
}

// Unlock closes the journal database and releases the lock.
func (s *Store) Unlock() {
	s.closeDB()
	if s.lockFd >= 0 {
		closeFd(s.lockFd)
		s.lockFd = -1
	}
}
