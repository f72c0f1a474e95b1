// Package journal is the hook's durable memory: for every inode the hook has
// given to QEMU, who owned it before, which domains hold it now, and on which
// boot they took it. It is the only code that writes the journal, its lock and the host's
// id in the state directory (the inventory package keeps domains' records
// of directories in its inventory/ subdirectory).
//
// The journal is one bbolt database (state.db): entries by key, and indexes
// by domain, by holder boot, by inode number, by directory for ACL grants,
// and of entries without holders, so each query reads only the entries it
// returns and each Save writes only the entries a call changed, in one
// fsynced transaction. A call's cost follows what it changes, not what the
// host holds. Calls are serialized by a blocking flock on a lock file with a
// bounded wait.
//
// Callers follow write-ahead order: a record is durable before the change
// it describes is made, and removed only after the change is undone, so a
// hook killed at any instant leaves a journal from which release or restore
// can put every original owner back. A journal that cannot be read is moved
// aside, never deleted. The whole-state JSON file of earlier versions
// (state.json) is imported once and renamed; Decode and Encode still read
// and write that format for states set aside or exported.
package journal
