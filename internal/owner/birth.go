package owner

import "golang.org/x/sys/unix"

// Birth is the inode's creation time (statx btime) in nanoseconds, 0 when
// the filesystem does not keep one. With the device and inode numbers it
// tells a file from a later one that reuses the inode number.
func Birth(h *Handle) int64 {
	var stx unix.Statx_t
	if err := unix.Statx(h.Fd(), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &stx); err != nil || stx.Mask&unix.STATX_BTIME == 0 {
		return 0
	}
	return stx.Btime.Sec*1e9 + int64(stx.Btime.Nsec)
}

// SameBirth reports whether h is the inode recorded with creation time
// recorded, as far as creation times tell: a record or a filesystem
// without them matches.
func SameBirth(recorded int64, h *Handle) bool {
	if recorded == 0 {
		return true
	}
	b := Birth(h)
	return b == 0 || b == recorded
}
