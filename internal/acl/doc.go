// Package acl reads, evaluates and narrowly edits POSIX access ACLs
// (the system.posix_acl_access extended attribute) without libacl or cgo.
//
// What belongs here:
//   - the binary xattr format (Parse, ACL.Bytes), validated with the same
//     rules the kernel applies in fs/posix_acl.c (entry order, sorted unique
//     qualifiers, a mask whenever there are named entries);
//   - the kernel's access decision (ACL.Allowed), so the doctor can answer
//     "can the QEMU user search/read/write this inode?" without switching
//     credentials;
//   - the one mutation the hook makes: granting a single uid search (x) on
//     a directory and undoing exactly that (AddUserExec, Undo). The Change
//     value records what was added so that release removes only that, and
//     a directory that had no ACL before ends up with no ACL again
//     (getfacl output and st_mode identical to before). The mask is shared
//     by all named entries, so several grants on one directory (other QEMU
//     users, the administrator's entries) are released in any order
//     without one taking search away from another: see Change. The pure
//     cores (addUserExec, undo) live in change.go, the I/O in fd_linux.go.
//
// Every filesystem operation works through an already-open file descriptor,
// typically O_PATH: the hook opens each file once and never re-resolves its
// path. Because fgetxattr(2) and friends fail with EBADF on O_PATH
// descriptors, the package goes through the descriptor's magic link
// /proc/thread-self/fd/N with the following (non-l) xattr calls, which act
// on the inode the descriptor holds. /proc must be mounted.
//
// Not here: deciding which directories need access (plan), journalling the
// Change (journal), default ACLs (never touched), and anything path-based.
//
// The package does not serialise against concurrent ACL edits by other
// programs (setfacl by an administrator between read and write is lost or
// preserved only as far as a read-modify-write allows); the hook's own
// lock serialises its instances.
package acl
