// Package owner is the only code that changes who owns a host file.
//
// Every change goes through a Handle: the path is resolved to its final
// target once, component by component, recording every symlink followed
// and its owner; the target is opened O_PATH|O_NOFOLLOW|O_CLOEXEC with
// openat2 refusing any symlink (so a component swapped for a symlink after
// resolution makes the open fail instead of landing elsewhere); the inode
// behind the descriptor and the links that led to it are checked against
// the Policy (type, device number, hard links, protected directories,
// symlinks owned by someone other than root or the file's owner, block
// devices the host has mounted or swaps on); and ownership is changed with
// fchownat(fd, "", AT_EMPTY_PATH) on that same descriptor. Nothing here
// checks a path by name and then changes it by name.
package owner
