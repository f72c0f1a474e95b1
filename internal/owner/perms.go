package owner

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// aclXattr is the access ACL. Default ACLs exist only on directories,
// which are never given to QEMU.
const aclXattr = "system.posix_acl_access"

// maxACLSize is XATTR_SIZE_MAX: no ACL value is larger.
const maxACLSize = 64 << 10

// Perms are an inode's permission bits and access ACL as the kernel gives
// them back, so two reads of an unchanged inode compare equal byte for
// byte.
type Perms struct {
	// Mode is st_mode & 07777.
	Mode uint32 `json:"mode"`
	// ACL is the raw system.posix_acl_access value; nil when the inode
	// has none, or its filesystem keeps no ACLs.
	ACL []byte `json:"acl,omitempty"`
}

// Equal reports whether p and q are the same mode and ACL.
func (p Perms) Equal(q Perms) bool {
	return p.Mode == q.Mode && bytes.Equal(p.ACL, q.ACL)
}

// Perms reads the mode and the access ACL of the inode held, through the
// descriptor (fstat, and getxattr on its /proc/thread-self/fd link).
func (h *Handle) Perms() (Perms, error) {
	var st unix.Stat_t
	if err := unix.Fstat(h.fd, &st); err != nil {
		return Perms{}, fmt.Errorf("fstat %s: %w", h.Path, err)
	}
	runtime.KeepAlive(h)
	a, err := h.RawACL()
	if err != nil {
		return Perms{}, err
	}
	return Perms{Mode: st.Mode & 0o7777, ACL: a}, nil
}

// RawACL returns the access ACL of the inode held as the kernel stores it
// (system.posix_acl_access), nil when it has none or the filesystem keeps
// none.
func (h *Handle) RawACL() ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := h.getxattr(aclXattr, buf)
		switch {
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			return nil, nil
		case errors.Is(err, unix.ERANGE) && len(buf) < maxACLSize:
			buf = make([]byte, maxACLSize)
			continue
		case err != nil:
			return nil, fmt.Errorf("read the ACL of %s: %w", h.Path, err)
		}
		return append([]byte(nil), buf[:n]...), nil
	}
}

// SetPerms makes the inode held have exactly p's ACL and mode, through
// the descriptor, and reports whether anything had to change. The ACL is
// written first (or removed, when p has none): the kernel derives the
// group class bits of the mode from it; the mode last, which also sets an
// ACL's mask to the group bits p records, as they were together.
func (h *Handle) SetPerms(p Perms) (changed bool, err error) {
	if p.Mode&^0o7777 != 0 {
		return false, fmt.Errorf("set mode of %s: %#o is not permission bits", h.Path, p.Mode)
	}
	cur, err := h.Perms()
	if err != nil {
		return false, err
	}
	if cur.Equal(p) {
		return false, nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if !bytes.Equal(cur.ACL, p.ACL) {
		if p.ACL == nil {
			err = unix.Removexattr(h.fdPath(), aclXattr)
			if errors.Is(err, unix.ENODATA) {
				err = nil
			}
		} else {
			err = unix.Setxattr(h.fdPath(), aclXattr, p.ACL, 0)
		}
		if err != nil {
			return false, fmt.Errorf("put back the ACL of %s: %w", h.Path, err)
		}
	}
	// chmod follows the descriptor's magic link to the inode held:
	// fchmod refuses O_PATH descriptors and fchmodat cannot take
	// AT_EMPTY_PATH before Linux 6.6.
	if err := unix.Chmod(h.fdPath(), p.Mode); err != nil {
		return true, fmt.Errorf("put back mode %04o of %s: %w", p.Mode, h.Path, err)
	}
	runtime.KeepAlive(h)
	return true, h.Refresh()
}
