package cluster

import (
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// DirName is the record directory made on a shared filesystem when
// cluster_dir is not set.
const DirName = ".libvirt-dac-hook"

// Dirs says where the records of shared files are kept.
type Dirs struct {
	// Dir (cluster_dir), when set, holds the records of every shared
	// file: a directory on shared storage every host mounts at this path.
	Dir string
	// Shared are the directories qemu.conf's shared_filesystems names
	// (canonical): files at or below them are on shared storage whatever
	// their filesystem, and their records go in <entry>/DirName.
	Shared []string
}

// InShared reports whether path (canonical) is at or below one of the
// shared_filesystems directories, the way libvirt matches them: the path
// itself or any of its parents is one of them.
func (d Dirs) InShared(path string) bool {
	_, ok := d.sharedOf(path)
	return ok
}

func (d Dirs) sharedOf(path string) (string, bool) {
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if slices.Contains(d.Shared, p) {
			return p, true
		}
		if p == "/" || p == "." {
			return "", false
		}
	}
}

// For returns the record directory of the file at path (canonical) on
// the filesystem with device dev: cluster_dir when set; else DirName in
// the shared_filesystems entry the file is under; else DirName at the top
// of the file's mount (the highest directory above it on the same device).
func (d Dirs) For(path string, dev uint64) string {
	if d.Dir != "" {
		return d.Dir
	}
	if s, ok := d.sharedOf(path); ok {
		return filepath.Join(s, DirName)
	}
	return filepath.Join(mountTop(filepath.Dir(path), dev), DirName)
}

// mountTop climbs from dir while the parent is on device dev.
func mountTop(dir string, dev uint64) string {
	for dir != "/" {
		parent := filepath.Dir(dir)
		var st unix.Stat_t
		if err := unix.Stat(parent, &st); err != nil || st.Dev != dev {
			break
		}
		dir = parent
	}
	return dir
}

// Known lists the record directories that exist on this host: cluster_dir,
// those of the shared_filesystems entries, and DirName at the top of every
// mount (mountinfo) other than the kernel's own. Commands that look at all
// records (status, restore, boot, forget-host) read these.
func (d Dirs) Known(mountinfo string) []string {
	var cands []string
	if d.Dir != "" {
		cands = append(cands, d.Dir)
	} else {
		for _, s := range d.Shared {
			cands = append(cands, filepath.Join(s, DirName))
		}
		cands = append(cands, mountPoints(mountinfo)...)
	}
	var out []string
	for _, c := range cands {
		var st unix.Stat_t
		if slices.Contains(out, c) || unix.Lstat(c, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		out = append(out, c)
	}
	return out
}

// kernelFS are mount types no shared image lives on.
var kernelFS = []string{"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs",
	"tracefs", "pstore", "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl", "binfmt_misc", "autofs", "efivarfs", "rpc_pipefs", "nsfs"}

// mountPoints are DirName under every mount point of a mountinfo file.
func mountPoints(mountinfo string) []string {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range owner.ParseMounts(b) {
		if !slices.Contains(kernelFS, m.FSType) {
			out = append(out, filepath.Join(m.Point, DirName))
		}
	}
	return out
}
