// Package inventory keeps, in STATE_DIR/inventory/, what cooperative mode
// needs to give back files libvirt labels during a run (a hot-plugged disk,
// an inserted or ejected ISO, the old source of a block copy): libvirt
// runs no hook for those, and by release the owner a file had is gone from
// its inode.
//
// Two kinds of file live there: one record per running domain (which
// directories its live operations may bring files from, who its QEMU runs
// as, and a generation prepare's handshake with the watcher names),
// written by its prepare and removed by its release; and labelled.json,
// which only the watcher (package watch) writes: files of those
// directories that became QEMU's during a run, each with the inode's
// identity (file handle, generation, birth where the filesystem keeps
// one), the owner it had just before, and whether libvirt was shown to
// have made the change.
//
// A record's file name is a digest of the domain name's bytes, so any name
// libvirt accepts fits NAME_MAX; names and paths are stored as bytes, so
// none is changed by JSON's UTF-8. Every file is written durably (a
// temporary file fsynced, renamed over the old one, the directory
// fsynced) and opened without following a link; a record that cannot be
// read is reported and skipped, never a reason to skip the others.
//
// What belongs here: the formats, and reading and writing them safely.
// Not here: watching (watch), deciding what to give back (apply) or
// changing any owner (owner).
package inventory
