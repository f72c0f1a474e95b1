package owner

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

// ErrRefused is wrapped by every policy refusal.
var ErrRefused = errors.New("refused by policy")

// Policy says which inodes the hook may change. The zero Policy protects
// nothing and refuses hardlinked regular files.
type Policy struct {
	// Protected lists directories (canonical, absolute) under which the
	// hook never changes anything. The check is made on the canonical path
	// the Handle was opened at, i.e. on the final target of every symlink.
	Protected []string
	// AllowHardlinks permits regular files with more than one link.
	AllowHardlinks bool
	// ConfigPath is named in refusals so the admin knows what to edit.
	ConfigPath string
}

// Want describes the inode a resource must be.
type Want struct {
	Types domain.FileType
	// Rdev, when non-zero, is the exact device number a device node must
	// have (e.g. a USB node must be the device sysfs named).
	Rdev uint64
	// Misc permits character devices of the misc major (10), which hold
	// /dev/vhost-scsi and friends; other resources never need them.
	Misc bool
}

// Check decides whether the inode held by h may be given away. It looks only
// at what the descriptor holds: its canonical path, type, link count and
// device number.
func (p Policy) Check(h *Handle, w Want) error {
	if dir, ok := p.protectedBy(h.Path); ok {
		return fmt.Errorf("%s is under protected directory %s (protected_paths in %s): %w", h.Path, dir, p.configName(), ErrRefused)
	}
	mode := h.Stat.Mode & unix.S_IFMT
	t := typeOf(mode)
	if t == 0 || w.Types&t == 0 {
		return fmt.Errorf("%s is a %s, expected %s: %w", h.Path, TypeName(t), typesString(w.Types), ErrRefused)
	}
	if mode == unix.S_IFREG && h.Stat.Nlink > 1 && !p.AllowHardlinks {
		return fmt.Errorf("%s has %d hard links; another name may be a file QEMU must not get (allow_hardlinks in %s): %w", h.Path, h.Stat.Nlink, p.configName(), ErrRefused)
	}
	if mode == unix.S_IFCHR || mode == unix.S_IFBLK {
		rdev := uint64(h.Stat.Rdev)
		if w.Rdev != 0 && rdev != w.Rdev {
			return fmt.Errorf("%s is device %d:%d, expected %d:%d: %w", h.Path, unix.Major(rdev), unix.Minor(rdev), unix.Major(w.Rdev), unix.Minor(w.Rdev), ErrRefused)
		}
		if mode == unix.S_IFCHR && forbiddenChar(unix.Major(rdev), unix.Minor(rdev), w.Misc) {
			return fmt.Errorf("%s is character device %d:%d, which no domain resource may be: %w", h.Path, unix.Major(rdev), unix.Minor(rdev), ErrRefused)
		}
	}
	return nil
}

// forbiddenChar lists character devices that give whoever owns them the
// host: memory and entropy devices (major 1: mem, kmem, null, port, zero,
// full, random, kmsg...), virtual consoles (major 4, minors < 64), the
// controlling tty, console and ptmx (major 5), and misc devices (major 10,
// /dev/kvm, /dev/fuse, ...) unless the resource is one.
func forbiddenChar(major, minor uint32, misc bool) bool {
	switch major {
	case 1, 5:
		return true
	case 4:
		return minor < 64
	case 10:
		return !misc
	}
	return false
}

func (p Policy) protectedBy(path string) (string, bool) {
	for _, dir := range p.Protected {
		if path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/") {
			return dir, true
		}
	}
	return "", false
}

// Protects reports whether a path falls under a protected directory; the
// path should be canonical.
func (p Policy) Protects(path string) bool {
	_, ok := p.protectedBy(filepath.Clean(path))
	return ok
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
