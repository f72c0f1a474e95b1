// Package watch is the watcher: a service the init system runs beside
// libvirt's daemon (install/libvirt-dac-hook-watch.service) that sees,
// while domains run in cooperative mode, which files libvirt labels for
// QEMU without running a hook (hot-plug, media change, snapshots, block
// jobs) and what owner each had just before. Release gives those back.
//
// It follows the directories of this boot's records (package inventory)
// with fanotify: a mark on each directory for the events of its entries
// (not on whole filesystems, whose every change would reach it), file
// handles for every event, the pidfd of the process that caused it, and
// an unlimited queue, so no flood an unprivileged user makes can drop an
// event.
// Before any event it reads each newly watched directory once for the
// owners its files have; afterwards each file is known by its file
// handle (with the inode's generation), never by path or inode number,
// and what is known is never replaced by a later read.
//
// An owner change to a domain's QEMU owner counts as libvirt's label
// only when the process that made it was libvirt's daemon (the pid in
// daemon_pid_files: by default /run/libvirtd.pid or /run/virtqemud.pid)
// or a fork of it still under
// one of libvirt's thread names (libvirt forks "rpc-libvirtd" children to
// label in QEMU's mount namespace), alive when the event was read: the
// kernel makes the pidfd only then. An administrator's chown, a cp -a, a
// chown from a shell, the hook itself: not libvirt's. Events are read on
// a thread of their own at the lowest real-time priority, so that the
// evidence is taken before libvirt reaps its fork. A change whose process
// was gone before its event was read is recorded as not proven, left as
// libvirt leaves it, and status says so.
//
// A new file libvirt labels before its creation is read (a snapshot
// overlay) has its owner before from libvirt's remember_owner xattr,
// trusted only on a file born since the watch began, stamped with this
// boot, and labelled by libvirt's own hand.
//
// Prepare writes its record durably and then waits, bounded, for the
// watcher's answer on STATE_DIR/watch.sock naming that record's
// generation (Sync); release does the same, naming the record it is
// about to read back and remove, so the watcher has handled every event
// queued before it is read. The
// watcher only reads the watched directories and writes labelled.json;
// it changes no owner.
//
// Owners it cannot know stay unknown: files in directories no running
// domain's record covers, changes while no watcher ran, and new files
// labelled before they were seen where libvirt keeps no xattr
// (remember_owner = 0, NFS).
package watch
