package qemuproc

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ID is an inode: device and inode number.
type ID struct{ Dev, Ino uint64 }

// Proc is a running QEMU holding a file open.
type Proc struct {
	PID int
	// Domain is the guest name on QEMU's command line (-name guest=...),
	// "" when it has none.
	Domain string
}

// OpenFiles maps every inode a running QEMU holds open to one QEMU holding
// it. procRoot is normally "/proc". A process is QEMU by its executable's
// name, or, when uids are given, by running as one of them (a QEMU binary
// under another name).
func OpenFiles(procRoot string, uids ...uint32) (map[ID]Proc, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	out := map[ID]Proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		if !IsQEMU(dir) && !runsAs(dir, uids) {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		p := Proc{PID: pid, Domain: guestName(dir)}
		for _, fd := range fds {
			// DONT_SYNC: a hung NFS or FUSE mount behind a descriptor must
			// not hang the caller (a release, and libvirtd's stop with it).
			var st unix.Statx_t
			if unix.Statx(unix.AT_FDCWD, filepath.Join(dir, "fd", fd.Name()), unix.AT_STATX_DONT_SYNC, unix.STATX_INO, &st) != nil {
				continue
			}
			out[ID{Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino}] = p
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

func runsAs(dir string, uids []uint32) bool {
	if len(uids) == 0 {
		return false
	}
	var st unix.Stat_t
	return unix.Stat(dir, &st) == nil && slices.Contains(uids, st.Uid)
}

// guestName reads "-name guest=NAME,..." (or "-name NAME") from a QEMU
// command line.
func guestName(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return ""
	}
	args := bytes.Split(b, []byte{0})
	for i := 0; i+1 < len(args); i++ {
		if string(args[i]) != "-name" {
			continue
		}
		for _, kv := range strings.Split(string(args[i+1]), ",") {
			if v, ok := strings.CutPrefix(kv, "guest="); ok {
				return v
			}
		}
		if !strings.Contains(string(args[i+1]), "=") {
			return string(args[i+1])
		}
	}
	return ""
}
