package qemuproc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// Proc is a running QEMU of libvirt's holding a file open.
type Proc struct {
	PID int
	// Domain is the domain whose pid file names it.
	Domain string
}

// OpenFiles maps every inode a QEMU of libvirt's holds open to one QEMU
// holding it. Its processes are those the pid files in runDir
// (normally RunDir) name, alive in procRoot (normally "/proc"), and, when
// uids are given, running as one of them.
func OpenFiles(runDir, procRoot string, uids ...uint32) (map[owner.ID]Proc, error) {
	ents, err := os.ReadDir(runDir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[owner.ID]Proc{}, nil // libvirt runs no domain
	}
	if err != nil {
		return nil, err
	}
	out := map[owner.ID]Proc{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		pid, ok := ReadPid(filepath.Join(runDir, e.Name()))
		if !ok {
			continue
		}
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		if len(uids) > 0 && !runsAs(dir, uids) {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		p := Proc{PID: pid, Domain: name}
		for _, fd := range fds {
			// DONT_SYNC: a hung NFS or FUSE mount behind a descriptor must
			// not hang the caller (a release, and libvirtd's stop with it).
			var st unix.Statx_t
			if unix.Statx(unix.AT_FDCWD, filepath.Join(dir, "fd", fd.Name()), unix.AT_STATX_DONT_SYNC, unix.STATX_INO, &st) != nil {
				continue
			}
			out[owner.ID{Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino}] = p
		}
	}
	return out, nil
}

// IsQEMU reports whether the process at /proc/PID dir runs a binary named
// like QEMU. Never proof on its own (any user can name a program so): grant
// uses it only on a pid libvirt's root-owned pid file names, to tell a
// QEMU from a process that reused the pid.
func IsQEMU(dir string) bool {
	exe, err := os.Readlink(filepath.Join(dir, "exe"))
	if err != nil {
		return false
	}
	base := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	return strings.HasPrefix(base, "qemu-system-") || base == "qemu-kvm"
}

func runsAs(dir string, uids []uint32) bool {
	var st unix.Stat_t
	return unix.Stat(dir, &st) == nil && slices.Contains(uids, st.Uid)
}
