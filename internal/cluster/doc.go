// Package cluster keeps the records of files on filesystems shared between
// hosts: who owned each file before any QEMU got it, and which hosts'
// domains hold it now. Hosts that migrate domains over shared storage need
// one record per file that all of them see and change in turn; a host's own
// journal cannot be that, and an xattr on the image is not stored by every
// shared filesystem (NFS has no trusted xattrs).
//
// The records live on the shared filesystem itself, as libvirt's virtlockd
// keeps its lockspace (file_lockspace_dir): one directory per shared
// filesystem (Dirs.For says which), holding one small JSON file per image
// and one lock file. Guarantees:
//
//   - Same file on every host. A record is named by the SHA-256 of the
//     image's canonical path (libvirt requires the same path on both ends of
//     a migration) and carries the path and inode number; a record whose
//     inode is not the file's is about a file that was replaced, and callers
//     treat it as absent.
//   - Races between hosts. Every reader and writer holds the directory's
//     POSIX (fcntl) write lock, which NFS (lockd/NFSv4), GlusterFS, CephFS,
//     GFS2 and OCFS2 enforce between clients; the lock is released when the
//     process exits, so a dead host's lock goes with its lease.
//   - Durable. A record is written to a temporary file, fsynced, renamed
//     over the old one and the directory fsynced: a crash leaves the old
//     record or the new one, never a mix.
//   - Not forgeable from QEMU or an image's owner. The directory must be a
//     real directory owned by root with no group or other access, and every
//     record a root-owned regular file with one link and no group or other
//     access; anything else is refused, not read.
//   - Damage stays local. A record that cannot be read is reported for that
//     file only (ErrDamaged); the other records keep working.
//
// Not guaranteed: that hosts agree on where the records are when they mount
// the storage at different places (set cluster_dir alike on every host), nor
// that a root-squashed export lets root write them (ErrRootSquash says so).
package cluster
