// Package watch keeps the inventories of running domains current while
// they run (cooperative mode). An inventory taken at prepare knows the
// files that existed then; a disk created afterwards and hot-plugged, or an
// ISO copied in and inserted, would have no record of its owner by the time
// libvirt labels it for QEMU. The watcher sees each file of the inventoried
// directories appear or change owner (inotify) and records its owner at
// once, so release can give it back after libvirt left it to QEMU or
// "restored" it to root:root.
//
// One watcher runs per host, started by a prepare when none runs (a lock
// file in the state directory says whether one does), and exits when no
// inventory is left. It only reads the inventoried directories and writes
// the inventory files, under the journal's lock; it changes no owner.
//
// Owners it cannot see stay unknown: one set in the instant between a
// file's creation and libvirt's labelling faster than the watcher reads
// the event, and files in directories no running domain's inventory covers.
package watch
