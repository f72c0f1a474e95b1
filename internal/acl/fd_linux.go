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

// Change records exactly what AddUserExec added, so that Undo removes that
// and nothing else. It is stored in the hook's journal as JSON.
type Change struct {
	// UID is the user that was granted search permission.
	UID uint32 `json:"uid"`
	// AddedEntry: the user:UID entry did not exist and was created.
	AddedEntry bool `json:"added_entry,omitempty"`
	// AddedPerm: the bits added to user:UID (Exec, or 0 if it already had it).
	AddedPerm Perm `json:"added_perm,omitempty"`
	// AddedMask: the ACL was minimal and a mask:: was created.
	AddedMask bool `json:"added_mask,omitempty"`
	// MaskChanged: an existing mask:: gained bits (MaskAddedPerm).
	MaskChanged bool `json:"mask_changed,omitempty"`
	// OldMask is the group class before the change: the old mask, or
	// group:: when AddedMask (the group bits of st_mode in both cases).
	OldMask Perm `json:"old_mask"`
	// MaskAddedPerm: the bits the mask has beyond OldMask because of us.
	MaskAddedPerm Perm `json:"mask_added_perm,omitempty"`
	// Widened lists existing entries whose effective permissions grew
	// because the mask gained x (they had x, masked off). Informational,
	// for logs and the doctor; Undo takes it back with the mask bit.
	Widened []Entry `json:"widened,omitempty"`
}

// Changed reports whether c altered the ACL at all.
func (c Change) Changed() bool {
	return c.AddedEntry || c.AddedPerm != 0 || c.AddedMask || c.MaskChanged
}

// addUserExec is the pure core of AddUserExec.
func addUserExec(a ACL, uid uint32) (ACL, Change) {
	a = a.clone()
	c := Change{UID: uid, OldMask: a.GroupClass()}
	if i := a.find(User, uid); i >= 0 {
		c.AddedPerm = Exec &^ a[i].Perm
		a[i].Perm |= Exec
	} else {
		a = a.insert(Entry{Tag: User, ID: uid, Perm: Exec})
		c.AddedEntry, c.AddedPerm = true, Exec
	}
	if i := a.find(Mask, 0); i >= 0 {
		if a[i].Perm&Exec == 0 {
			for _, e := range a {
				if (e.Tag == User && e.ID != uid || e.Tag == GroupObj || e.Tag == Group) && e.Perm&Exec != 0 {
					c.Widened = append(c.Widened, e)
				}
			}
			a[i].Perm |= Exec
			c.MaskChanged, c.MaskAddedPerm = true, Exec
		}
	} else {
		// The ACL was minimal. Its mask must cover group:: so the owning
		// group keeps exactly what it had (effective = group:: & mask),
		// plus x for our entry. st_mode's group bits will show the mask.
		g, _ := a.perm(GroupObj)
		a = a.insert(Entry{Tag: Mask, Perm: g | Exec})
		c.AddedMask, c.MaskAddedPerm = true, Exec&^g
	}
	return a, c
}

// undo is the pure core of Undo.
func undo(a ACL, c Change) ACL {
	a = a.clone()
	if i := a.find(User, c.UID); i >= 0 {
		if c.AddedEntry {
			a = append(a[:i], a[i+1:]...)
		} else {
			a[i].Perm &^= c.AddedPerm
		}
	}
	named := false
	for _, e := range a {
		if e.Tag == User || e.Tag == Group {
			named = true
		}
	}
	if i := a.find(Mask, 0); i >= 0 {
		if c.AddedMask && !named {
			a = append(a[:i], a[i+1:]...)
		} else {
			// Someone else's named entries may have appeared since; keep
			// the mask they need, minus what we added.
			a[i].Perm &^= c.MaskAddedPerm
		}
	}
	return a
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
// If uid already has x and the mask allows it, nothing is written and the
// returned Change reports !Changed(). AddUserExec does not check whether
// uid owns the inode (then user:: applies and the entry has no effect):
// ask ACL.Allowed first. The caller must journal the Change before relying
// on Undo. Returns ErrNotSupported on filesystems without ACLs.
func AddUserExec(fd int, mode uint32, uid uint32) (Change, error) {
	if uid == undefinedID {
		return Change{}, fmt.Errorf("add acl entry for uid %d: %w: reserved id", uid, ErrInvalid)
	}
	a, err := current(fd, mode)
	if err != nil {
		return Change{}, err
	}
	next, c := addUserExec(a, uid)
	if !c.Changed() {
		return c, nil
	}
	if err := set(fd, next); err != nil {
		return Change{}, err
	}
	return c, nil
}

// Undo reverses c on the inode held by fd: it removes the entry AddUserExec
// created (or only the bits it ORed in), takes back the bits it added to
// the mask, and drops a mask it created when no named entries remain. An
// ACL that ends minimal is written as mode bits only (no xattr), so an
// inode that had no ACL before is back to exactly its old st_mode and
// getfacl output. mode is the inode's current st_mode (which still shows
// the mask); see AddUserExec for ErrModeMismatch. Undo of a Change that
// did nothing is a no-op, and Undo is idempotent as long as nobody else
// re-adds the same bits in between.
func Undo(fd int, mode uint32, c Change) error {
	if !c.Changed() {
		return nil
	}
	a, err := current(fd, mode)
	if err != nil {
		return err
	}
	next := undo(a, c)
	if equal(a, next) {
		return nil
	}
	return set(fd, next)
}

func equal(a, b ACL) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// PlanAddUserExec returns the Change AddUserExec would make to a, without
// touching anything; the hook journals it before making the change.
func PlanAddUserExec(a ACL, uid uint32) Change {
	_, c := addUserExec(a, uid)
	return c
}
