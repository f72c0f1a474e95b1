// Package inventory keeps, in STATE_DIR/inventory/, what cooperative mode
// needs to give back files libvirt labels during a run (a hot-plugged disk,
// an inserted or ejected ISO, the old source of a block copy): libvirt
// runs no hook for those, and by release the owner a file had is gone from
// its inode.
//
// Two kinds of file live there: one record per running domain (which
// directories its live operations may bring files from, and who its QEMU
// runs as), written by its prepare and removed by its release; and
// labelled.json, which only the watcher (package watch) writes: files of
// those directories that became QEMU's (or root:root) without the journal
// knowing them, each with the owner it had just before. Both are replaced
// atomically and bounded; neither is fsynced, because only a release of
// the same boot, or restore after a crash, reads them, and what they hold
// only ever adds knowledge.
//
// What belongs here: the formats, reading them safely, and the small
// helpers the watcher uses to read a directory's files (one fstatat per
// entry, no recursion). Not here: deciding what to give back (apply) or
// changing any owner (owner).
package inventory
