package owner

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// The xattr calls go through /proc/thread-self/fd/N: f*xattr refuse O_PATH
// descriptors (EBADF), and the l* variants would act on a symlink rather
// than the inode held. The thread is locked so thread-self stays ours.

func (h *Handle) fdPath() string {
	return "/proc/thread-self/fd/" + strconv.Itoa(h.fd)
}

// GetXattr reads an extended attribute of the inode held; ok is false when
// it is not set or the filesystem has no such namespace.
func (h *Handle) GetXattr(name string) (val []byte, ok bool, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 256)
	n, err := unix.Getxattr(h.fdPath(), name, buf)
	runtime.KeepAlive(h)
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("getxattr %s %s: %w", h.Path, name, err)
	}
	return buf[:n], true, nil
}

// SetXattr sets an extended attribute on the inode held.
func (h *Handle) SetXattr(name string, val []byte) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := unix.Setxattr(h.fdPath(), name, val, 0)
	runtime.KeepAlive(h)
	if err != nil {
		return fmt.Errorf("setxattr %s %s: %w", h.Path, name, err)
	}
	return nil
}

// RemoveXattr removes an extended attribute; a missing one is not an error.
func (h *Handle) RemoveXattr(name string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := unix.Removexattr(h.fdPath(), name)
	runtime.KeepAlive(h)
	if err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("removexattr %s %s: %w", h.Path, name, err)
	}
	return nil
}
