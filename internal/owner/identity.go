package owner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNotSameFile is wrapped when a file cannot be proven to be the one an
// Identity was taken of: it is gone, or what is found differs in device,
// inode number, generation or creation time.
var ErrNotSameFile = errors.New("not provably the recorded file")

// fsIocGetversion is FS_IOC_GETVERSION, _IOR('v', 1, long); the kernel
// writes an int.
const fsIocGetversion = 0x80087601

// Identity identifies one inode more firmly than device and inode number,
// which a later file may reuse, and independently of its path, which a
// rename changes. Fields the filesystem does not offer are zero.
type Identity struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
	// Generation is the inode generation (FS_IOC_GETVERSION): a reused
	// inode number gets a new one on filesystems that keep it.
	Generation uint32 `json:"generation,omitempty"`
	// Birth is the creation time (statx btime), in nanoseconds.
	Birth int64 `json:"birth,omitempty"`
	// HandleType, Handle and MountID are the file handle
	// (name_to_handle_at): it opens the inode wherever it has been
	// renamed to, and fails once the inode is deleted. The mount id is
	// valid on this boot only.
	HandleType int32  `json:"handle_type,omitempty"`
	Handle     []byte `json:"handle,omitempty"`
	MountID    int    `json:"mount_id,omitempty"`
}

// Inode is the device and inode number of the identity, the key every
// record of the inode is found by.
func (id Identity) Inode() ID { return ID{Dev: id.Dev, Ino: id.Ino} }

// Identity takes the identity of the inode h holds. A filesystem without
// file handles or generations gives an Identity without them; only a
// failure to read what the filesystem does offer is an error.
func (h *Handle) Identity() (Identity, error) {
	id := Identity{Dev: uint64(h.Stat.Dev), Ino: h.Stat.Ino, Birth: Birth(h)}
	fh, mnt, err := unix.NameToHandleAt(h.fd, "", unix.AT_EMPTY_PATH)
	switch {
	case err == nil:
		id.HandleType, id.Handle, id.MountID = fh.Type(), append([]byte(nil), fh.Bytes()...), mnt
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.ENOSYS):
	default:
		return Identity{}, fmt.Errorf("file handle of %s: %w", h.Path, err)
	}
	id.Generation = generation(h)
	return id, nil
}

// generation reads the inode generation, 0 when it cannot be had. The
// ioctl needs a real open descriptor, not O_PATH; only regular files and
// directories are opened for it, because opening a device or a FIFO acts.
// The magic link of the O_PATH descriptor is followed on purpose, and the
// inode it reaches checked against the one held.
func generation(h *Handle) uint32 {
	switch h.Stat.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR:
	default:
		return 0
	}
	fd, shared, err := h.readFD()
	if err != nil {
		return 0
	}
	if !shared {
		defer func() { _ = unix.Close(fd) }() // read only
	}
	g, err := unix.IoctlGetUint32(fd, fsIocGetversion)
	if err != nil {
		return 0
	}
	return g
}

// OpenByIdentity opens the inode id was taken of, wherever it is now: by
// its file handle when id has one (the mount is found by mount id, else
// through hint's directory), else at hint. Then it proves the inode is the
// recorded one: same device and inode number, and same generation and
// creation time where both are known. The Handle's Path is where the file
// is now. Anything unproven is an error wrapping ErrNotSameFile; opening
// by handle needs CAP_DAC_READ_SEARCH.
func OpenByIdentity(id Identity, hint string) (*Handle, error) {
	h, err := openIdentity(id, hint)
	if err != nil {
		return nil, err
	}
	if err := id.Check(h); err != nil {
		_ = h.Close()
		return nil, err
	}
	return h, nil
}

// openIdentity opens what OpenByIdentity then proves: by file handle, or
// at hint when id has none.
func openIdentity(id Identity, hint string) (*Handle, error) {
	if len(id.Handle) == 0 {
		h, err := Open(hint)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotSameFile, err)
		}
		return h, nil
	}
	mfd, err := mountFd(id, hint)
	if err != nil {
		return nil, fmt.Errorf("open %s by handle: %w: %w", hint, ErrNotSameFile, err)
	}
	h, err := OpenHandleAt(mfd, id.HandleType, id.Handle, "")
	_ = unix.Close(mfd) // a directory opened for reading only
	if err != nil {
		return nil, fmt.Errorf("open %s by handle: %w", hint, err)
	}
	return h, nil
}

// Check proves h is the inode of id: same device and inode number, and
// same generation and creation time where both are known.
func (id Identity) Check(h *Handle) error {
	if uint64(h.Stat.Dev) != id.Dev || h.Stat.Ino != id.Ino {
		return fmt.Errorf("%s is inode %d:%d, recorded %d:%d: %w", h.Path, h.Stat.Dev, h.Stat.Ino, id.Dev, id.Ino, ErrNotSameFile)
	}
	if id.Birth != 0 {
		if b := Birth(h); b != 0 && b != id.Birth {
			return fmt.Errorf("%s was created at %d, the recorded file at %d: %w", h.Path, b, id.Birth, ErrNotSameFile)
		}
	}
	if id.Generation != 0 {
		if g := generation(h); g != 0 && g != id.Generation {
			return fmt.Errorf("%s has inode generation %d, the recorded file %d: %w", h.Path, g, id.Generation, ErrNotSameFile)
		}
	}
	return nil
}

// mountFd opens a directory on the filesystem of id for
// open_by_handle_at: the mount point of id's mount id, or else hint's
// directory when it is on the same mount.
func mountFd(id Identity, hint string) (int, error) {
	var dirs []string
	if mnt, ok := mountPoint(id.MountID); ok {
		dirs = append(dirs, mnt)
		if !onDevice(mnt, id.Dev) {
			// The cached table is older than a mount change: read it again.
			forgetMounts()
			if mnt, ok := mountPoint(id.MountID); ok {
				dirs[0] = mnt
			}
		}
	}
	dirs = append(dirs, filepath.Dir(hint))
	for _, dir := range dirs {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		// Something mounted over the path since is another filesystem.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && uint64(st.Dev) == id.Dev {
			return fd, nil
		}
		_ = unix.Close(fd)
	}
	return -1, fmt.Errorf("no directory of the recorded filesystem (device %d) found among %s", id.Dev, strings.Join(dirs, ", "))
}

// mounts caches the mount points of /proc/self/mountinfo by mount id: a
// release proves dozens of files on the same few mounts, and the kernel
// renders the whole table for every read. A mount id missing from the
// cache, or a cached mount point now on another device (a mount id is
// reused once its mount is gone), reads the table again.
var mounts struct {
	sync.Mutex
	byID map[int]string
}

// mountPoint finds the mount point of mount id in /proc/self/mountinfo.
func mountPoint(mountID int) (string, bool) {
	if mountID == 0 {
		return "", false
	}
	mounts.Lock()
	defer mounts.Unlock()
	if mnt, ok := mounts.byID[mountID]; ok {
		return mnt, true
	}
	b, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return "", false
	}
	mounts.byID = map[int]string{}
	for _, m := range ParseMounts(b) {
		mounts.byID[int(m.ID)] = m.Point
	}
	mnt, ok := mounts.byID[mountID]
	return mnt, ok
}

// forgetMounts drops the cached mount table.
func forgetMounts() {
	mounts.Lock()
	mounts.byID = nil
	mounts.Unlock()
}

// onDevice reports whether dir is on device dev.
func onDevice(dir string, dev uint64) bool {
	var st unix.Stat_t
	return unix.Stat(dir, &st) == nil && uint64(st.Dev) == dev
}

// OpenHandleAt opens the inode of a file handle (from fanotify or
// name_to_handle_at) on the filesystem of mountFd, without following a
// link, as a Handle whose Path is path when given, else where the inode
// is now. A handle that opens nothing (ESTALE: the inode is gone) is an
// error wrapping ErrNotSameFile. It proves nothing more: OpenByIdentity
// does.
func OpenHandleAt(mountFd int, handleType int32, handle []byte, path string) (*Handle, error) {
	fd, err := unix.OpenByHandleAt(mountFd, unix.NewFileHandle(handleType, handle), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSameFile, err)
	}
	h := &Handle{fd: fd, Path: path}
	if err := h.Refresh(); err != nil {
		_ = h.Close()
		return nil, err
	}
	if h.Path == "" {
		if p, err := os.Readlink(h.ProcPath()); err == nil {
			h.Path = p
		}
	}
	return h, nil
}
