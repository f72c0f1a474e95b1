package qemuproc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ID is an inode: device and inode number.
type ID struct{ Dev, Ino uint64 }

// OpenFiles maps every inode a running QEMU holds open to the pid of one
// QEMU holding it. procRoot is normally "/proc".
func OpenFiles(procRoot string) (map[ID]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	out := map[ID]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		if !IsQEMU(dir) {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			// DONT_SYNC: a hung NFS or FUSE mount behind a descriptor must
			// not hang the release (and libvirtd's stop with it).
			var st unix.Statx_t
			if unix.Statx(unix.AT_FDCWD, filepath.Join(dir, "fd", fd.Name()), unix.AT_STATX_DONT_SYNC, unix.STATX_INO, &st) != nil {
				continue
			}
			out[ID{Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino}] = pid
		}
	}
	return out, nil
}

// IsQEMU reports whether the process at /proc/PID dir runs a QEMU binary.
func IsQEMU(dir string) bool {
	exe, err := os.Readlink(filepath.Join(dir, "exe"))
	if err != nil {
		return false
	}
	base := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	return strings.HasPrefix(base, "qemu-system-") || base == "qemu-kvm"
}
