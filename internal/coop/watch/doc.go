// Package watch follows, while domains run in cooperative mode, the
// directories their live operations bring files from (their images'
// directories, /var/lib/libvirt/images, /dev, ...). libvirt runs no hook
// for a hot-plug, a media change or a block job: it labels the file for
// QEMU, and by release the owner it had is gone from the inode. The
// watcher knows each file's owner from the moment it watches the
// directory (one scan, then inotify), and when a file the journal does not
// know becomes QEMU's (or root:root) it keeps the owner the file had just
// before, in the inventory directory's labelled.json. Release gives those
// back.
//
// One watcher runs per host, started by a prepare when none runs (an OFD
// lock on a file in the state directory says whether one does), and
// leaves when no domain's record is left. It only reads the watched
// directories and writes labelled.json, which nothing else writes; it
// changes no owner.
//
// When libvirt labels a new file before the watcher reads its creation
// (it creates a snapshot overlay or copy target and labels it a moment
// later), the owner before is the one libvirt wrote into its
// remember_owner xattr, trusted only on a file born since the watch
// began, stamped with this boot, and read from the inode stat saw.
//
// Owners it cannot know stay unknown: files in directories no running
// domain's record covers; a new file labelled before the watcher reads
// it when libvirt keeps no xattr (remember_owner = 0, NFS, read-only
// media) or has already replaced it with a label of QEMU's; and events
// the kernel dropped (inotify queue overflow, logged). An existing file
// whose owner changes in the instant before libvirt labels it keeps the
// owner the watcher knew before that change.
package watch
