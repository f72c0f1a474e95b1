// Package inventory records, when a domain is prepared in cooperative
// mode, who owns each file of the directories its images live in, so that
// release can give back files libvirt labelled during the run (a
// hot-plugged disk, an inserted or ejected ISO, the old source of a block
// copy) and left owned by QEMU or "restored" to root:root. Only the hook
// sees a domain start; libvirt runs no hook for live operations, so this
// record, taken before they happen, is what vouches for an owner later.
//
// What belongs here: taking the record (one directory read and one fstatat
// per entry, no recursion, bounded), and keeping it in
// STATE_DIR/inventory/, one file per domain, written atomically. Not
// here: deciding what to give back (apply) or changing any owner (owner).
//
// The record is not fsynced: it is only read by the release of the same
// boot, and a host crash brings no release.
package inventory
