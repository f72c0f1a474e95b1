package owner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// hostState is what the host's kernel is doing with its files, read once
// per Snapshot: mounts, swap, loop devices, protected roots and the
// character majors of /proc/devices.
type hostState struct {
	mounts    []Mount
	byID      map[uint64]int // mount id → index in mounts
	use       blockUse
	swapFiles map[ID]string     // active swap files by inode → name listed
	loopFiles map[ID]string     // backing files of attached loop devices → loop name
	loopDevs  map[uint64]string // block devices loop devices are backed by → loop name
	roots     []protectedRoot
	// rootsPlaced: every root's place in its filesystem is known.
	rootsPlaced bool
	// charMajors is read on first use: most plans hold no device node.
	majorsOnce sync.Once
	charMajors map[string][]uint32
}

// protectedRoot is a protected directory identified by its inode and by
// where it lies in its filesystem, so a bind mount of it (or of anything
// below it) elsewhere is still recognised.
type protectedRoot struct {
	path   string // as configured
	id     ID
	fsDev  uint64 // mountinfo device of its filesystem
	fsPath string // its path inside that filesystem
}

// Snapshot returns p with the host's tables read now: Check then uses them
// instead of reading /proc and /sys for every file. A plan takes one
// snapshot and checks all its files against it; a mount, swapon or losetup
// after the snapshot is not seen by that plan.
func (p Policy) Snapshot() (Policy, error) {
	h, err := p.loadHost()
	if err != nil {
		return p, err
	}
	p.host = h
	return p, nil
}

func (p Policy) state() (*hostState, error) {
	if p.host != nil {
		return p.host, nil
	}
	return p.loadHost()
}

func (p Policy) loadHost() (*hostState, error) {
	h := &hostState{byID: map[uint64]int{}, swapFiles: map[ID]string{}, loopFiles: map[ID]string{}}
	mi := filepath.Join(p.procRoot(), "self", "mountinfo")
	data, err := os.ReadFile(mi)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	h.mounts = ParseMounts(data)
	for i, m := range h.mounts {
		h.byID[m.ID] = i
	}
	if h.use, err = p.readBlockUse(h.mounts); err != nil {
		return nil, err
	}
	for name, id := range p.readSwapFiles() {
		h.swapFiles[id] = name
	}
	h.loopFiles, h.loopDevs = p.readLoopFiles()
	h.rootsPlaced = true
	for _, dir := range p.Protected {
		if r, ok := h.protectedRoot(dir); ok {
			h.roots = append(h.roots, r)
			h.rootsPlaced = h.rootsPlaced && r.fsPath != ""
		}
	}
	return h, nil
}

// protectedRoot identifies dir. A protected directory that does not exist
// protects nothing by inode (its path text still counts).
func (h *hostState) protectedRoot(dir string) (protectedRoot, bool) {
	canon, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return protectedRoot{}, false
	}
	fd, err := unix.Open(canon, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return protectedRoot{}, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return protectedRoot{}, false
	}
	r := protectedRoot{path: dir, id: ID{Dev: uint64(st.Dev), Ino: st.Ino}}
	if m, ok := h.mountOf(fd, canon); ok {
		r.fsDev, r.fsPath = m.Dev, fsPath(m, canon)
	}
	return r, true
}

// mountOf finds the mount holding the inode fd refers to (opened at the
// canonical path p): by the mount id statx reports, or, on kernels without
// STATX_MNT_ID, by the longest mount point above p (the last one listed
// wins, as later mounts cover earlier ones).
func (h *hostState) mountOf(fd int, p string) (Mount, bool) {
	var stx unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_MNT_ID, &stx)
	runtime.KeepAlive(fd)
	if err == nil && stx.Mask&unix.STATX_MNT_ID != 0 {
		if i, ok := h.byID[stx.Mnt_id]; ok {
			return h.mounts[i], true
		}
	}
	best, found := -1, false
	for i, m := range h.mounts {
		if under(p, m.Point) && (best < 0 || len(m.Point) >= len(h.mounts[best].Point)) {
			best, found = i, true
		}
	}
	if !found {
		return Mount{}, false
	}
	return h.mounts[best], true
}

// fsPath is where the file at canonical path p, in mount m, lies inside
// m's filesystem: m's root joined with p below m's mount point.
func fsPath(m Mount, p string) string {
	rel, err := filepath.Rel(m.Point, p)
	if err != nil || rel == "." {
		return m.Root
	}
	return filepath.Join(m.Root, rel)
}

func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// protectedInode reports the protected directory the inode held by h lies
// in, judged on the inode's place in its filesystem rather than on the path
// text: a bind mount of /etc, or of /etc/shadow, below an image directory
// is still /etc.
func (h *hostState) protectedInode(hd *Handle) (string, bool) {
	if len(h.roots) == 0 {
		return "", false
	}
	id := hd.ID()
	for _, r := range h.roots {
		if r.id == id {
			return r.path, true
		}
	}
	m, ok := h.mountOf(hd.fd, hd.Path)
	runtime.KeepAlive(hd)
	if ok {
		fp := fsPath(m, hd.Path)
		for _, r := range h.roots {
			if r.fsPath != "" && r.fsDev == m.Dev && under(fp, r.fsPath) {
				return r.path, true
			}
		}
		if h.rootsPlaced {
			return "", false
		}
	}
	// Without a mount for the file or for every protected root, look at
	// the directories of the file's own path: one of them may be a
	// protected directory reached through a mount.
	for d := filepath.Dir(hd.Path); ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if unix.Stat(d, &st) == nil {
			for _, r := range h.roots {
				if r.id == (ID{Dev: uint64(st.Dev), Ino: st.Ino}) {
					return r.path, true
				}
			}
		}
		if d == "/" {
			break
		}
	}
	return "", false
}

// readSwapFiles lists the active swap areas of /proc/swaps that are
// regular files, by inode. A name that no longer resolves (deleted,
// another mount namespace) is left out: Check then relies on the kernel,
// which refuses to let anyone but swap write the file.
func (p Policy) readSwapFiles() map[string]ID {
	out := map[string]ID{}
	data, err := os.ReadFile(filepath.Join(p.procRoot(), "swaps"))
	if err != nil {
		return out
	}
	for i, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if i == 0 || len(fields) < 2 || fields[1] != "file" {
			continue
		}
		name := unescapeOctal(fields[0])
		var st unix.Stat_t
		if err := unix.Stat(name, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			out[name] = ID{Dev: uint64(st.Dev), Ino: st.Ino}
		}
	}
	return out
}

// readLoopFiles lists the backing files of attached loop devices by inode:
// from the loop device itself (LOOP_GET_STATUS64 gives the backing file's
// device and inode numbers) and, where the node is not there to ask, by
// stat of /sys/block/loopN/loop/backing_file.
//
// A loop device backed by a block device is listed by that device's
// number instead (devs).
func (p Policy) readLoopFiles() (files map[ID]string, devs map[uint64]string) {
	out := map[ID]string{}
	devs = map[uint64]string{}
	base := filepath.Join(p.sysRoot(), "block")
	ents, err := os.ReadDir(base)
	if err != nil {
		return out, devs
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "loop") {
			continue
		}
		bf, err := os.ReadFile(filepath.Join(base, name, "loop", "backing_file"))
		if errors.Is(err, fs.ErrNotExist) || err != nil {
			continue // not attached
		}
		label := "/dev/" + name
		if id, rdev, ok := loopStatus(filepath.Join(base, name, "dev"), label); ok {
			out[id] = label
			if rdev != 0 {
				devs[rdev] = label
			}
		}
		text := strings.TrimSuffix(strings.TrimSuffix(string(bf), "\n"), " (deleted)")
		var st unix.Stat_t
		if unix.Stat(text, &st) == nil {
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				out[ID{Dev: uint64(st.Dev), Ino: st.Ino}] = label
			case unix.S_IFBLK:
				devs[uint64(st.Rdev)] = label
			}
		}
	}
	return out, devs
}

// loopStatus asks the loop device /dev/loopN (if that node is the device
// sysfs names) for the inode it is backed by, and that inode's device
// number when it is a block device.
func loopStatus(devFile, node string) (ID, uint64, bool) {
	rdev, err := readDevFile(devFile)
	if err != nil {
		return ID{}, 0, false
	}
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return ID{}, 0, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK || uint64(st.Rdev) != rdev {
		return ID{}, 0, false
	}
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		return ID{}, 0, false
	}
	// The kernel encodes device numbers with new_encode_dev, which is
	// glibc's makedev for every major below 4096.
	return ID{Dev: info.Device, Ino: info.Inode}, info.Rdevice, true
}

// kernelFile refuses a file the kernel itself is using as storage: a
// loop device's backing file or block device, an active swap file.
func (h *hostState) kernelFile(hd *Handle) error {
	if hd.Stat.Mode&unix.S_IFMT == unix.S_IFBLK {
		if loop, ok := h.loopDevs[uint64(hd.Stat.Rdev)]; ok {
			return fmt.Errorf("block device %s is the backing device of loop device %s: QEMU would write under whatever the host has on it; detach it first (`losetup -d %s`): %w", hd.Path, loop, loop, ErrRefused)
		}
		return nil
	}
	id := hd.ID()
	if loop, ok := h.loopFiles[id]; ok {
		return fmt.Errorf("%s is the backing file of loop device %s: QEMU would write under whatever the host has on it; detach it first (`losetup -d %s`): %w", hd.Path, loop, loop, ErrRefused)
	}
	if sw, ok := h.swapFiles[id]; ok {
		return fmt.Errorf("%s is active swap (%s in /proc/swaps): giving it to QEMU would hand it the host's memory; `swapoff %s` first: %w", hd.Path, sw, sw, ErrRefused)
	}
	return nil
}
