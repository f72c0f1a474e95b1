// Package coop holds cooperative mode's own parts, the ones that let a
// release give back the files libvirt labels during a run (hot-plug,
// media change, snapshots, block jobs), for which libvirt runs no hook:
//
//   - inventory: the durable records, one per running domain (which
//     directories its live operations bring files from, who its QEMU
//     runs as), and the watcher's labelled.json (files libvirt labelled,
//     each with the inode's identity and the owner it had before).
//   - watch: the watcher, a service the init system runs beside
//     libvirtd or virtqemud. It follows the records' directories with
//     fanotify and counts an owner change as libvirt's label only when
//     the process that made it was libvirt's daemon or a fork of it,
//     alive when the event was read. It answers prepare's handshake on
//     a socket in the state directory.
//   - qemuproc: the files QEMU processes of libvirt's domains hold open,
//     the processes found by the pid files in libvirt's run directory.
//   - remembered: libvirt's own remember_owner xattrs.
//
// Deciding what to give back and changing owners stay in apply and
// owner; this subtree only observes and records.
package coop
