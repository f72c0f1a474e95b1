package owner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ID identifies an inode on this boot: the device it lives on and its number.
type ID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// Handle is an O_PATH descriptor for one resolved host file. All checks and
// changes are made through the descriptor, never through the path again.
type Handle struct {
	fd int
	// Path is the canonical path the descriptor was opened at: no
	// symlinks, absolute, clean.
	Path string
	// Stat is the inode's metadata as of Open or the last Refresh.
	Stat unix.Stat_t
}

// maxOpenRetries bounds how often Open re-resolves when the tree changes
// under it (openat2 says EAGAIN or ELOOP because of a concurrent rename or
// symlink swap).
const maxOpenRetries = 4

// Open resolves path (following symlinks to the final target) and opens the
// target with O_PATH|O_NOFOLLOW|O_CLOEXEC. The open refuses every symlink and
// magic link on the way, so if the tree changed since resolution the open
// fails rather than reaching a different file. The error wraps fs.ErrNotExist
// when the file does not exist.
func Open(path string) (*Handle, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("open %q: path is not absolute", path)
	}
	var lastErr error
	for range maxOpenRetries {
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", path, unwrapPathError(err))
		}
		h, err := openResolved(real)
		if err == nil {
			return h, nil
		}
		if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EXDEV) {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("open %s: path keeps changing while it is resolved: %w", path, lastErr)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func openResolved(real string) (*Handle, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, real, &how)
	if errors.Is(err, unix.ENOSYS) {
		return openResolvedWalk(real)
	}
	if err != nil {
		return nil, err
	}
	h := &Handle{fd: fd, Path: real}
	if err := h.Refresh(); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// openResolvedWalk is the fallback for kernels without openat2 (< 5.6): it
// walks the path one component at a time with O_NOFOLLOW, so a symlink
// anywhere makes it fail just as RESOLVE_NO_SYMLINKS would.
func openResolvedWalk(real string) (*Handle, error) {
	dir, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	parts := splitPath(real)
	for i, name := range parts {
		flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
		next, err := unix.Openat(dir, name, flags, 0)
		unix.Close(dir)
		if err != nil {
			return nil, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return nil, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(next)
			return nil, unix.ELOOP
		}
		if i < len(parts)-1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(next)
			return nil, unix.ENOTDIR
		}
		dir = next
	}
	h := &Handle{fd: dir, Path: real}
	if err := h.Refresh(); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func splitPath(p string) []string {
	var parts []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return parts
}

// Fd returns the O_PATH descriptor. It stays owned by the Handle.
func (h *Handle) Fd() int { return h.fd }

// ID returns the identity of the inode held.
func (h *Handle) ID() ID { return ID{Dev: uint64(h.Stat.Dev), Ino: h.Stat.Ino} }

// Owner returns the inode's uid and gid as of the last Refresh.
func (h *Handle) Owner() (uid, gid uint32) { return h.Stat.Uid, h.Stat.Gid }

// Refresh re-reads the inode's metadata through the descriptor.
func (h *Handle) Refresh() error {
	if err := unix.Fstat(h.fd, &h.Stat); err != nil {
		return fmt.Errorf("fstat %s: %w", h.Path, err)
	}
	return nil
}

// Chown changes the owner of the inode held, through the descriptor. File
// modes are not touched by the hook, but note the kernel clears set-user-ID
// and set-group-ID bits of an executable on chown.
func (h *Handle) Chown(uid, gid uint32) error {
	err := unix.Fchownat(h.fd, "", int(uid), int(gid), unix.AT_EMPTY_PATH)
	runtime.KeepAlive(h)
	if err != nil {
		return fmt.Errorf("chown %s to %d:%d: %w", h.Path, uid, gid, err)
	}
	h.Stat.Uid, h.Stat.Gid = uid, gid
	return nil
}

// ProcPath is the /proc path that reaches the inode held without resolving
// Path again. Opening it (with normal flags) reopens the same inode; callers
// must hold the Handle open while they use it.
func (h *Handle) ProcPath() string {
	return "/proc/self/fd/" + strconv.Itoa(h.fd)
}

// OpenFile reopens the inode held for reading, without resolving Path again.
func (h *Handle) OpenFile() (*os.File, error) {
	if h.Stat.Mode&unix.S_IFMT != unix.S_IFREG && h.Stat.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, fmt.Errorf("read %s: not a regular file or block device", h.Path)
	}
	fd, err := unix.Open(h.ProcPath(), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	runtime.KeepAlive(h)
	if err != nil {
		return nil, fmt.Errorf("reopen %s for reading: %w", h.Path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != h.Stat.Ino || st.Dev != h.Stat.Dev {
		unix.Close(fd)
		return nil, fmt.Errorf("reopen %s for reading: got a different inode", h.Path)
	}
	return os.NewFile(uintptr(fd), h.Path), nil
}

// Statfs reports the filesystem type of the inode held.
func (h *Handle) Statfs() (unix.Statfs_t, error) {
	var st unix.Statfs_t
	err := unix.Fstatfs(h.fd, &st)
	runtime.KeepAlive(h)
	if err != nil {
		return st, fmt.Errorf("statfs %s: %w", h.Path, err)
	}
	return st, nil
}

// Close releases the descriptor. It is safe to call more than once.
func (h *Handle) Close() error {
	if h == nil || h.fd < 0 {
		return nil
	}
	err := unix.Close(h.fd)
	h.fd = -1
	return err
}
