// Package journal is the hook's durable memory: for every inode the hook has
// given to QEMU, who owned it before, which domains hold it now, and on which
// boot they took it. It is the only code that writes the state directory.
//
// The state is one JSON file replaced atomically (write, fsync, rename,
// fsync directory) under an exclusive flock with a bounded wait. Callers
// follow write-ahead order: a record is durable before the change it
// describes is made, and removed only after the change is undone, so a hook
// killed at any instant leaves a state from which release or restore can put
// every original owner back.
package journal
