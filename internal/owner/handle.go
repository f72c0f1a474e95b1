package owner

import (
	"errors"
	"fmt"
	"io"
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
	// Links are the symlinks followed from the path given to Open to
	// Path, in the order followed; empty when none was.
	Links []Link
	// Stat is the inode's metadata as of Open or the last Refresh.
	Stat unix.Stat_t
	// rfd, when hasRFD, is a read-only descriptor of a regular file,
	// opened once for the header reads, the generation and the lease
	// probe, which would otherwise each open the inode again.
	rfd    int
	hasRFD bool
}

// maxOpenRetries bounds how often Open re-resolves when the tree changes
// under it (openat2 says EAGAIN or ELOOP because of a concurrent rename or
// symlink swap).
const maxOpenRetries = 4

// Open resolves path (following symlinks to the final target, recording
// each one and its owner in Links) and opens the target with
// O_PATH|O_NOFOLLOW|O_CLOEXEC. The open refuses every symlink and magic
// link on the way, so if the tree changed since resolution the open fails
// rather than reaching a different file: the inode held is the one the
// recorded links lead to. The error wraps fs.ErrNotExist when the file
// does not exist, and unix.ELOOP when more than 40 symlinks are met.
func Open(path string) (*Handle, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("open %q: path is not absolute", path)
	}
	// A clean path that openat2 opens while refusing every symlink has
	// none, so it is canonical already and no link was followed: the usual
	// case costs one openat2 instead of a walk. Anything else (a symlink
	// on the way, a missing file) takes the resolving walk below, which
	// records links and reports errors.
	if filepath.Clean(path) == path {
		h, err := openResolved(path)
		if err == nil && h.Stat.Mode&unix.S_IFMT != unix.S_IFLNK {
			return h, nil
		}
		// O_PATH|O_NOFOLLOW opens a final symlink itself: resolve it below.
		h.Close()
	}
	var lastErr error
	for range maxOpenRetries {
		canon, links, err := resolve(path)
		if errors.Is(err, errTreeChanged) {
			lastErr = err
			continue
		}
		if err != nil {
			// "open P: ENOENT" for P == path says the path twice.
			if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), "open "+path+": ") {
				return nil, fmt.Errorf("resolve %s: %w", path, inner)
			}
			return nil, fmt.Errorf("resolve %s: %w", path, err)
		}
		h, err := openResolved(canon)
		if err == nil {
			h.Links = links
			return h, nil
		}
		if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EXDEV) {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("open %s: path keeps changing while it is resolved: %w", path, lastErr)
}

func openResolved(canon string) (*Handle, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, canon, &how)
	if errors.Is(err, unix.ENOSYS) {
		fd, err = walkOpen(canon, false)
	}
	if err != nil {
		return nil, err
	}
	h := &Handle{fd: fd, Path: canon}
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
	if h.hasRFD {
		_ = unix.Close(h.rfd) // read only
		h.hasRFD = false
	}
	return err
}

// readFD returns a read-only descriptor of the inode held, reopened
// through /proc/self/fd and checked to be the same inode. A regular
// file's is kept until Close (shared is true: the caller must not close
// it); any other type's is the caller's to close.
func (h *Handle) readFD() (fd int, shared bool, err error) {
	if h.hasRFD {
		return h.rfd, true, nil
	}
	fd, err = unix.Open(h.ProcPath(), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	runtime.KeepAlive(h)
	if err != nil {
		return -1, false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd) // read only
		return -1, false, err
	}
	if st.Ino != h.Stat.Ino || st.Dev != h.Stat.Dev {
		_ = unix.Close(fd) // read only
		return -1, false, errDifferentInode
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		h.rfd, h.hasRFD = fd, true
		return fd, true, nil
	}
	return fd, false, nil
}

var errDifferentInode = errors.New("got a different inode")

// Reader reads the inode a Handle holds through a read-only descriptor,
// with pread: unlike an *os.File it costs no fcntl and no (refused)
// netpoller registration per image. A regular file's descriptor is the
// Handle's own: a Reader must not be used after its Handle is closed.
type Reader struct {
	fd     int
	shared bool // the Handle's descriptor: Close leaves it open
	// Size is the file size: st_size for a regular file, the device size
	// for a block device.
	Size int64
}

// OpenReader gives a reader of the inode held, opened (once per Handle
// for a regular file) through /proc/self/fd without resolving Path again,
// and checked to be the same inode.
func (h *Handle) OpenReader() (*Reader, error) {
	t := h.Stat.Mode & unix.S_IFMT
	if t != unix.S_IFREG && t != unix.S_IFBLK {
		return nil, fmt.Errorf("read %s: not a regular file or block device", h.Path)
	}
	fd, shared, err := h.readFD()
	if err != nil {
		return nil, fmt.Errorf("reopen %s for reading: %w", h.Path, err)
	}
	r := &Reader{fd: fd, shared: shared}
	if t == unix.S_IFBLK {
		r.Size, err = unix.Seek(fd, 0, io.SeekEnd)
	} else {
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		r.Size = st.Size
	}
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("size of %s: %w", h.Path, err)
	}
	return r, nil
}

// ReadAt implements io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pread(r.fd, p[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}

// Close releases the descriptor, unless it is the Handle's.
func (r *Reader) Close() error {
	if r.shared {
		return nil
	}
	return unix.Close(r.fd)
}

// HasWriters reports whether some process holds the regular file held
// open for writing: the kernel grants a read lease only while no
// descriptor of the inode is open for writing, and the lease is dropped
// at once, so nobody waits on it. known is false where the filesystem
// takes no leases (NFS, FUSE and others).
func (h *Handle) HasWriters() (writers, known bool, err error) {
	fd, shared, err := h.readFD()
	if err != nil {
		return false, false, fmt.Errorf("open %s to check for writers: %w", h.Path, err)
	}
	if !shared {
		defer unix.Close(fd) // read only
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK)
	switch {
	case err == nil:
		if _, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK); err != nil && shared {
			// Closing drops the lease: no writer may wait on it.
			_ = unix.Close(h.rfd) // read only
			h.hasRFD = false
		}
		return false, true, err
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EBUSY):
		return true, true, nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOLCK):
		return false, false, nil
	}
	return false, false, fmt.Errorf("check %s for writers: %w", h.Path, err)
}
