package owner

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// The xattr calls go through /proc/thread-self/fd/N, unless the handle has
// a descriptor open for reading: f*xattr refuse O_PATH descriptors
// (EBADF), and the l* variants would act on a symlink rather than the
// inode held. The thread is locked so thread-self stays ours.

func (h *Handle) fdPath() string {
	return "/proc/thread-self/fd/" + strconv.Itoa(h.fd)
}

// getxattr reads the attribute name of the inode held into buf. Through
// the descriptor opened for reading when there is one (fgetxattr takes
// it, and skips the walk of /proc a path costs on every file), else
// through the O_PATH descriptor's /proc path.
func (h *Handle) getxattr(name string, buf []byte) (int, error) {
	defer runtime.KeepAlive(h)
	if h.hasRFD {
		return unix.Fgetxattr(h.rfd, name, buf)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return unix.Getxattr(h.fdPath(), name, buf)
}

// GetXattr reads an extended attribute of the inode held; ok is false when
// it is not set or the filesystem has no such namespace.
func (h *Handle) GetXattr(name string) (val []byte, ok bool, err error) {
	buf := make([]byte, 256)
	n, err := h.getxattr(name, buf)
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
