// Package owner is the only code that changes who owns a host file.
//
// Every change goes through a Handle: the path is resolved to its final
// target once, opened O_PATH|O_NOFOLLOW|O_CLOEXEC with openat2 refusing any
// symlink (so a component swapped for a symlink after resolution makes the
// open fail instead of landing elsewhere), the inode behind the descriptor is
// checked against the Policy, and ownership is changed with
// fchownat(fd, "", AT_EMPTY_PATH) on that same descriptor. Nothing here
// checks a path by name and then changes it by name.
package owner
