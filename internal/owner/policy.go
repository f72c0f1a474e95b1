package owner

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

// ErrRefused is wrapped by every policy refusal.
var ErrRefused = errors.New("refused by policy")

// Policy says which inodes the hook may change. The zero Policy protects
// no directory but still refuses, whatever its fields say:
//   - hardlinked regular files (unless AllowHardlinks);
//   - an inode reached through a symlink owned by neither root nor the
//     inode's owner (see Check);
//   - a block device that is mounted, active swap, or holds a partition or
//     device-mapper/md device that is, read from /proc and /sys.
type Policy struct {
	// Protected lists directories (canonical, absolute) under which the
	// hook never changes anything. The check is made on the canonical path
	// the Handle was opened at, i.e. on the final target of every symlink.
	Protected []string
	// AllowHardlinks permits regular files with more than one link.
	AllowHardlinks bool
	// ConfigPath is named in refusals so the admin knows what to edit.
	ConfigPath string
	// ProcRoot and SysRoot are where procfs and sysfs are mounted
	// ("/proc" and "/sys" when empty); tests point them at fake trees.
	// Check reads ProcRoot/self/mountinfo, ProcRoot/swaps and
	// SysRoot/dev/block/MAJ:MIN/ for block devices.
	ProcRoot, SysRoot string

	// host holds the tables Snapshot read; nil makes Check read them
	// for every call.
	host *hostState
}

// Want describes the inode a resource must be.
type Want struct {
	Types domain.FileType
	// Rdev, when non-zero, is the exact device number a device node must
	// have (e.g. a USB node must be the device sysfs named).
	Rdev uint64
	// Kind is the resource the inode is for. It picks the character
	// devices it may be (the allowlist in chardev.go); a kind with no
	// entry there may be no character device.
	Kind domain.Kind
	// LinkOwners are further uids whose symlinks may lead to the inode,
	// besides root and the inode's current owner. A caller that knows
	// the owner the inode had before the hook changed it (from its
	// journal) passes it, so a file already given to QEMU stays
	// reachable through its real owner's links.
	LinkOwners []uint32
}

// Check decides whether the inode held by h may be given away. It looks at
// what the descriptor holds (its canonical path, type, link count, owner
// and device number), at the symlinks Open followed to reach it, and for
// block devices at the host's mount and swap tables.
//
// Symlinks: every link followed must be owned by root, by the inode's
// owner, or by a uid in w.LinkOwners. This is the idea of the kernel's
// fs.protected_symlinks, which root's own resolution does not get: a
// user's link may only lead to that user's own files. Without it, anyone
// who can write an image directory could plant "data.raw -> /dev/vda" (or
// -> another guest's image) and have the hook give it to QEMU running with
// their label. Links made by root (/dev/disk/by-id/*, admin-made links)
// are trusted. There is deliberately no switch to turn this off; a
// legitimate user link to a file they do not own is fixed by pointing the
// XML at the file itself.
//
// Block devices: one that is mounted, active swap, or has a partition or
// holder (LVM, dm-crypt, md) that is, directly or a few levels down, is
// refused. The tables are read at Check time; a mount made after it is
// not seen.
func (p Policy) Check(h *Handle, w Want) error {
	if dir, ok := p.protectedBy(h.Path); ok {
		return fmt.Errorf("%s is under protected directory %s (protected_paths in %s): %w", h.Path, dir, p.configName(), ErrRefused)
	}
	host, err := p.state()
	if err != nil {
		return fmt.Errorf("cannot tell whether %s is protected: %w", h.Path, err)
	}
	if dir, ok := host.protectedInode(h); ok {
		return fmt.Errorf("%s is inside protected directory %s (reached through a mount of it): point the XML at a copy outside it, or remove the directory from protected_paths in %s: %w", h.Path, dir, p.configName(), ErrRefused)
	}
	if err := checkLinks(h, w); err != nil {
		return err
	}
	mode := h.Stat.Mode & unix.S_IFMT
	t := typeOf(mode)
	if t == 0 || w.Types&t == 0 {
		return fmt.Errorf("%s is a %s, expected %s: point the XML at the right file, or give the element the type of this one (<disk type='block'> for a block device): %w", h.Path, TypeName(t), typesString(w.Types), ErrRefused)
	}
	if mode == unix.S_IFREG && h.Stat.Nlink > 1 && !p.AllowHardlinks {
		return fmt.Errorf("%s has %d hard links; another name may be a file QEMU must not get: copy the file, remove its other names, or set allow_hardlinks = 1 in %s: %w", h.Path, h.Stat.Nlink, p.configName(), ErrRefused)
	}
	if mode == unix.S_IFREG {
		if err := host.kernelFile(h); err != nil {
			return err
		}
	}
	if mode == unix.S_IFCHR || mode == unix.S_IFBLK {
		rdev := uint64(h.Stat.Rdev)
		if w.Rdev != 0 && rdev != w.Rdev {
			return fmt.Errorf("%s is device %d:%d, expected %d:%d as sysfs says: the node is stale or planted; recreate it (`udevadm trigger`) and check who can write its directory: %w", h.Path, unix.Major(rdev), unix.Minor(rdev), unix.Major(w.Rdev), unix.Minor(w.Rdev), ErrRefused)
		}
		if mode == unix.S_IFCHR {
			if err := p.checkChar(h.Path, w.Kind, rdev, w.Rdev != 0); err != nil {
				return err
			}
			if unix.Major(rdev) == sgMajor {
				if err := p.sgInUse(h.Path, rdev); err != nil {
					return err
				}
			}
		}
		if mode == unix.S_IFBLK {
			if err := host.kernelFile(h); err != nil {
				return err
			}
			if err := p.blockInUse(h.Path, rdev); err != nil {
				return err
			}
			if err := claimed(h); err != nil {
				return err
			}
		}
	}
	return nil
}

// ErrLinkOwner is the refusal of a symlink whose owner owns neither the
// file it leads to nor is root; it wraps ErrRefused.
var ErrLinkOwner = fmt.Errorf("%w", ErrRefused)

// LinkUIDs lists the owners other than root of the symlinks Open followed.
func LinkUIDs(h *Handle) []uint32 {
	var out []uint32
	for _, l := range h.Links {
		if l.UID != 0 && !slices.Contains(out, l.UID) {
			out = append(out, l.UID)
		}
	}
	return out
}

// checkLinks applies the symlink ownership rule described at Check.
func checkLinks(h *Handle, w Want) error {
	uid := h.Stat.Uid
	for _, l := range h.Links {
		if l.Path == "/proc" || strings.HasPrefix(l.Path, "/proc/") {
			// /proc's links are magic (self, fd/N, PID/root): resolved as
			// text they name another file than the kernel would open.
			return fmt.Errorf("symlink %s is under /proc: its target is not a path the hook can follow safely; name the real path in the XML: %w", l.Path, ErrRefused)
		}
		if l.UID == 0 || l.UID == uid || slices.Contains(w.LinkOwners, l.UID) {
			continue
		}
		return fmt.Errorf("symlink %s (-> %s) is owned by uid %d, but leads to %s, owned by uid %d: a user's symlink may only lead to that user's own files; make the link as root, or name the real path in the XML: %w",
			l.Path, l.Target, l.UID, h.Path, uid, ErrLinkOwner)
	}
	return nil
}

func (p Policy) protectedBy(path string) (string, bool) {
	for _, dir := range p.Protected {
		if path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/") {
			return dir, true
		}
	}
	return "", false
}

func (p Policy) configName() string {
	if p.ConfigPath == "" {
		return "the hook's config"
	}
	return p.ConfigPath
}

func typeOf(mode uint32) domain.FileType {
	switch mode {
	case unix.S_IFREG:
		return domain.TypeRegular
	case unix.S_IFBLK:
		return domain.TypeBlock
	case unix.S_IFCHR:
		return domain.TypeChar
	case unix.S_IFSOCK:
		return domain.TypeSocket
	case unix.S_IFIFO:
		return domain.TypeFIFO
	case unix.S_IFDIR:
		return domain.TypeDir
	}
	return 0
}

// TypeName names a single file type for messages.
func TypeName(t domain.FileType) string {
	switch t {
	case domain.TypeRegular:
		return "regular file"
	case domain.TypeBlock:
		return "block device"
	case domain.TypeChar:
		return "character device"
	case domain.TypeSocket:
		return "socket"
	case domain.TypeFIFO:
		return "fifo"
	case domain.TypeDir:
		return "directory"
	}
	return "special file"
}

func typesString(ts domain.FileType) string {
	var names []string
	for t := domain.TypeRegular; t <= domain.TypeDir; t <<= 1 {
		if ts&t != 0 {
			names = append(names, TypeName(t))
		}
	}
	if len(names) == 0 {
		return "nothing"
	}
	return strings.Join(names, " or ")
}

// claimed asks the kernel whether a block device is in use: an exclusive
// open fails with EBUSY while it is mounted, active swap, or held by
// device-mapper, md, btrfs or another exclusive user, including cases the
// mount table does not show (other mount namespaces, multi-device btrfs,
// ZFS). The device is reopened through the handle, never by name.
func claimed(h *Handle) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Open(h.fdPath(), unix.O_RDONLY|unix.O_EXCL|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	runtime.KeepAlive(h)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("block device %s is in use by the kernel (mounted, swap, or claimed by device-mapper, md, btrfs...): giving it to QEMU would hand it the host's data; stop what holds it first, or give the domain another device: %w", h.Path, ErrRefused)
	}
	if err == nil {
		unix.Close(fd)
	}
	// Other errors (no medium, ...) are not ours to judge: QEMU will say.
	return nil
}
