package acl

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// xattrName is the access ACL; default ACLs are never touched.
const xattrName = "system.posix_acl_access"

// maxXattrSize is XATTR_SIZE_MAX: no xattr value can be larger.
const maxXattrSize = 64 << 10

// ErrNotSupported is returned (wrapped) by AddUserExec and Undo when the
// filesystem holding the inode does not support POSIX ACLs (EOPNOTSUPP),
// e.g. ramfs, or a filesystem mounted with noacl.
var ErrNotSupported = errors.New("filesystem does not support posix acls")

// ErrModeMismatch is returned (wrapped) by AddUserExec and Undo when the
// mode passed in no longer matches the inode: writing an ACL also sets
// the permission bits of st_mode, so the package refuses to act on a
// stale view of the inode.
var ErrModeMismatch = errors.New("inode mode changed since it was read")

// withFdPath runs f with a path that names the inode held by fd, usable
// with the following xattr calls even when fd is O_PATH. The OS thread is
// locked because the path is only meaningful on this thread.
//
// The caller must keep the descriptor open for the duration (for an
// *os.File, call runtime.KeepAlive on it after the acl call returns).
func withFdPath(fd int, f func(p string) error) error {
	if fd < 0 {
		return fmt.Errorf("fd %d: %w", fd, unix.EBADF)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return f("/proc/thread-self/fd/" + strconv.Itoa(fd))
}

// getRaw returns the raw xattr value; (nil, nil) when the inode has none.
// EOPNOTSUPP is returned as is, for the callers to decide.
func getRaw(fd int) ([]byte, error) {
	var out []byte
	err := withFdPath(fd, func(p string) error {
		buf := make([]byte, 256)
		for {
			n, err := unix.Getxattr(p, xattrName, buf)
			switch {
			case err == nil:
				out = buf[:n]
				return nil
			case errors.Is(err, unix.ENODATA):
				return nil
			case errors.Is(err, unix.ERANGE) && len(buf) < maxXattrSize:
				// The ACL grew or is larger than the first guess.
				buf = make([]byte, maxXattrSize)
			default:
				return err
			}
		}
	})
	return out, err
}

// Get returns the access ACL of the inode held by fd. mode is the inode's
// st_mode; it is used when the inode has no ACL xattr (ENODATA) or its
// filesystem does not support ACLs (EOPNOTSUPP): in both cases the mode
// bits alone decide access, so the minimal ACL from FromMode(mode) is the
// exact answer. fd may be an O_PATH descriptor.
func Get(fd int, mode uint32) (ACL, error) {
	b, err := getRaw(fd)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return FromMode(mode), nil
	}
	if err != nil {
		return nil, fmt.Errorf("get acl of fd %d: %w", fd, err)
	}
	if b == nil {
		return FromMode(mode), nil
	}
	a, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("get acl of fd %d: %w", fd, err)
	}
	return a, nil
}

// current reads the ACL for a mutation: it checks that mode still matches
// the inode and reports EOPNOTSUPP as ErrNotSupported.
func current(fd int, mode uint32) (ACL, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat fd %d: %w", fd, err)
	}
	if st.Mode&07777 != mode&07777 {
		return nil, fmt.Errorf("fd %d has mode %04o, caller saw %04o: %w", fd, st.Mode&07777, mode&07777, ErrModeMismatch)
	}
	b, err := getRaw(fd)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil, fmt.Errorf("get acl of fd %d: %w", fd, ErrNotSupported)
	}
	if err != nil {
		return nil, fmt.Errorf("get acl of fd %d: %w", fd, err)
	}
	if b == nil {
		return FromMode(mode), nil
	}
	a, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("get acl of fd %d: %w", fd, err)
	}
	return a, nil
}

// set writes a as the access ACL. The kernel derives st_mode's permission
// bits from it (keeping setuid/setgid/sticky, since we hold CAP_FSETID) and
// stores no xattr when a is minimal. Removing a leftover minimal xattr
// afterwards covers filesystems that store it anyway, so "no ACL before"
// really ends as "no ACL after".
func set(fd int, a ACL) error {
	if err := a.Valid(); err != nil {
		return fmt.Errorf("set acl of fd %d: %w", fd, err)
	}
	return withFdPath(fd, func(p string) error {
		if err := unix.Setxattr(p, xattrName, a.Bytes(), 0); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				err = ErrNotSupported
			}
			return fmt.Errorf("set acl %s on fd %d: %w", a, fd, err)
		}
		if !a.Minimal() {
			return nil
		}
		if err := unix.Removexattr(p, xattrName); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("remove minimal acl of fd %d: %w", fd, err)
		}
		return nil
	})
}

// AddUserExec grants uid search (x) on the inode held by fd by adding
// user:<uid>:--x to its access ACL (or ORing x into an existing user:<uid>
// entry), leaving user::, group::, other:: and every other entry as they
// were. mode is the inode's st_mode as the caller read it through fd; if
// the inode's mode differs now, ErrModeMismatch is returned and nothing is
// written.
//
// A named entry only counts through the mask, so the mask gets x too:
//   - no ACL before: mask:: = group:: | x. The owning group's effective
//     permissions (group:: & mask) are unchanged, but st_mode's group bits
//     now show the mask, so `ls -l` / `stat -c %a` show g+x (0700 → 0710)
//     until Undo.
//   - a mask without x before: it gains x, which also gives x to every
//     named entry and group:: that had x masked off; those are listed in
//     Change.Widened.
//
// active are the recorded Changes of the hook's other grants still in
// effect on this inode (other uids; from the journal). When one of them
// created or widened the mask, the new Change takes over that record
// (Change.Inherited), so that whichever grant is undone last restores the
// mask; without them, releasing the grants in another order than they
// were made can leave the mask behind. Pass only grants that are still in
// effect: a stale one can make Undo recompute or drop a mask that is not
// ours.
//
// If uid already has x, the mask allows it and no active grant owns the
// mask, nothing is written and the returned Change reports !Changed().
// AddUserExec does not check whether uid owns the inode (then user::
// applies and the entry has no effect): ask ACL.Allowed first. The caller
// must journal the Change before relying on Undo. Returns ErrNotSupported
// on filesystems without ACLs.
func AddUserExec(fd int, mode uint32, uid uint32, active ...Change) (Change, error) {
	if uid == undefinedID {
		return Change{}, fmt.Errorf("add acl entry for uid %d: %w: reserved id", uid, ErrInvalid)
	}
	a, err := current(fd, mode)
	if err != nil {
		return Change{}, err
	}
	next, c := addUserExec(a, uid, active)
	if !c.Changed() || equal(a, next) {
		return c, nil
	}
	if err := set(fd, next); err != nil {
		return Change{}, err
	}
	return c, nil
}

// Undo reverses c on the inode held by fd (see Change for the exact
// rules): it removes the entry AddUserExec created (or only the bits it
// ORed in); a mask it created is dropped when no named entries remain and
// otherwise recomputed as setfacl does; x it added to an existing mask is
// taken back unless an entry that did not have it masked off before (a
// later grant, the administrator's) still has x. An ACL that ends minimal
// is written as mode bits only (no xattr), so an inode that had no ACL
// before is back to exactly its old st_mode and getfacl output.
//
// active are the hook's other grants still in effect on this inode, as for
// AddUserExec; their entries keep the mask's x whatever the records say.
// mode is the inode's current st_mode (which still shows the mask); see
// AddUserExec for ErrModeMismatch. Undo of a Change that did nothing is a
// no-op, and Undo is idempotent as long as nobody else re-adds the same
// bits in between.
func Undo(fd int, mode uint32, c Change, active ...Change) error {
	if !c.Changed() {
		return nil
	}
	a, err := current(fd, mode)
	if err != nil {
		return err
	}
	next := undo(a, c, active)
	if equal(a, next) {
		return nil
	}
	return set(fd, next)
}
