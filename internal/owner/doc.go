// Package owner is the only code that changes who owns a host file.
//
// Every change goes through a Handle: the path is resolved to its final
// target once, component by component, recording every symlink followed
// and its owner; the target is opened O_PATH|O_NOFOLLOW|O_CLOEXEC with
// openat2 refusing any symlink (so a component swapped for a symlink after
// resolution makes the open fail instead of landing elsewhere); the inode
// behind the descriptor and the links that led to it are checked against
// the Policy (type; for character devices an allowlist per resource kind of
// device numbers and sysfs subsystems; hard links; protected directories,
// recognised by inode and by their place in their filesystem so bind mounts
// do not hide them; symlinks owned by someone other than root or the
// file's owner; block devices, and SCSI generic nodes of disks, the host
// has mounted or swaps on; loop backing and swap files); and ownership is
// changed with
// fchownat(fd, "", AT_EMPTY_PATH) on that same descriptor. Nothing here
// checks a path by name and then changes it by name.
//
// Also here, because the checks need them and every other package sits
// above: the owner type (UIDGID), the inode key (ID) and identity
// (Identity, OpenByIdentity), filesystem types (fstype.go), and the one
// reader of the kernel's mount table (ParseMount).
package owner
