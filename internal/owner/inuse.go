package owner

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Bounds on the walk over partitions and holders: deep enough for
// disk → partition → LVM PV → LV → dm-crypt → mounted filesystem, small
// enough that a strange sysfs cannot make Check loop.
const (
	maxHolderDepth = 5
	maxHolderNodes = 512
)

// blockUse is what the host is doing with its block devices right now.
type blockUse struct {
	mounts map[uint64]string // device number → a mount point
	swaps  map[uint64]string // device number → swap path as listed
}

// blockInUse returns a refusal when the block device rdev (opened at path)
// is mounted, active swap, or has a partition or holder (device-mapper,
// md, ...) that is, directly or further down: giving such a device to QEMU
// hands the guest the host's own filesystem. A device sysfs has no entry
// for is refused (nothing tells what is below it); a partition or holder
// whose entry went away meanwhile has nothing below it.
func (p Policy) blockInUse(path string, rdev uint64) error {
	h, err := p.state()
	if err != nil {
		return fmt.Errorf("cannot tell whether block device %s (%s) is in use: %w", path, devString(rdev), err)
	}
	use := h.use
	type node struct {
		dev   uint64
		depth int
		via   string // "partition" or "holder" of its parent; "" for rdev itself
		name  string // sysfs name, "sda1", "dm-0"
	}
	queue := []node{{dev: rdev}}
	seen := map[uint64]bool{rdev: true}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		what := ""
		if n.via != "" {
			what = fmt.Sprintf("%s %s (%s)", n.via, n.name, devString(n.dev))
		}
		if mnt, ok := use.mounts[n.dev]; ok {
			if what == "" {
				return fmt.Errorf("block device %s (%s) is mounted at %s: giving it to QEMU would hand it the host's filesystem; unmount it first, or give the domain another device: %w", path, devString(rdev), mnt, ErrRefused)
			}
			return fmt.Errorf("block device %s (%s) holds mounted %s at %s: giving it to QEMU would hand it the host's filesystem; unmount it first, or give the domain another device: %w", path, devString(rdev), what, mnt, ErrRefused)
		}
		if sw, ok := use.swaps[n.dev]; ok {
			if what == "" {
				return fmt.Errorf("block device %s (%s) is active swap (%s): giving it to QEMU would hand it the host's memory; `swapoff` it first: %w", path, devString(rdev), sw, ErrRefused)
			}
			return fmt.Errorf("block device %s (%s) holds %s, active swap (%s): giving it to QEMU would hand it the host's memory; `swapoff` it first: %w", path, devString(rdev), what, sw, ErrRefused)
		}
		if n.depth >= maxHolderDepth {
			continue
		}
		below, err := p.blockChildren(n.dev)
		if errors.Is(err, errNoSysfsEntry) {
			if n.depth == 0 {
				// The node exists, so the device does: sysfs not
				// knowing it says nothing about what is below it.
				return fmt.Errorf("block device %s (%s): sysfs has no entry for it (%s), so whether the host uses it cannot be told; recreate the node (`udevadm trigger`) or check sysfs_root: %w",
					path, devString(rdev), filepath.Join(p.sysRoot(), "dev", "block", devString(rdev)), ErrRefused)
			}
			continue // a partition or holder that went away meanwhile
		}
		if err != nil {
			return fmt.Errorf("cannot tell whether block device %s (%s) is in use: %w", path, devString(rdev), err)
		}
		for _, c := range below {
			if seen[c.dev] {
				continue
			}
			if len(seen) >= maxHolderNodes {
				return fmt.Errorf("cannot tell whether block device %s (%s) is in use: more than %d partitions and holders below it", path, devString(rdev), maxHolderNodes)
			}
			seen[c.dev] = true
			queue = append(queue, node{dev: c.dev, depth: n.depth + 1, via: c.via, name: c.name})
		}
	}
	return nil
}

func devString(dev uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
}

func (p Policy) procRoot() string {
	if p.ProcRoot == "" {
		return "/proc"
	}
	return p.ProcRoot
}

func (p Policy) sysRoot() string {
	if p.SysRoot == "" {
		return "/sys"
	}
	return p.SysRoot
}

func (p Policy) readBlockUse(mounts []Mount) (blockUse, error) {
	use := blockUse{mounts: map[uint64]string{}, swaps: map[uint64]string{}}
	for _, m := range mounts {
		if _, dup := use.mounts[m.Dev]; !dup {
			use.mounts[m.Dev] = m.Point
		}
		// btrfs (and some other filesystems) report an anonymous
		// device number in field 3; the mount source names the real
		// block device.
		if src, ok := blockDevOf(m.Source); ok {
			if _, dup := use.mounts[src]; !dup {
				use.mounts[src] = m.Point
			}
		}
	}
	sw := filepath.Join(p.procRoot(), "swaps")
	f, err := os.Open(sw)
	if errors.Is(err, fs.ErrNotExist) {
		return use, nil // a kernel without swap support
	}
	if err != nil {
		return use, fmt.Errorf("read swap table: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose
	sc := bufio.NewScanner(f)
	first := true
	for sc.Scan() {
		if first { // "Filename Type Size Used Priority"
			first = false
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		name := unescapeOctal(fields[0])
		if dev, ok := blockDevOf(name); ok {
			use.swaps[dev] = name
		}
	}
	if err := sc.Err(); err != nil {
		return use, fmt.Errorf("read swap table: %w", err)
	}
	return use, nil
}

// blockDevOf returns the device number of the block device at path, if
// it is one. Only absolute paths are looked at ("none", "tmpfs", ... are
// mount sources too); stat follows symlinks such as /dev/mapper/vg-lv,
// which is right here: only the device number is used, nothing is changed.
func blockDevOf(path string) (uint64, bool) {
	if !strings.HasPrefix(path, "/") {
		return 0, false
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false
	}
	return uint64(st.Rdev), true
}

type child struct {
	dev       uint64
	via, name string
}

// blockChildren lists the partitions (subdirectories of
// /sys/dev/block/MAJ:MIN with a "partition" file) and holders
// (/sys/dev/block/MAJ:MIN/holders/*) of dev, each by its "dev" file.
func (p Policy) blockChildren(dev uint64) ([]child, error) {
	base := filepath.Join(p.sysRoot(), "dev", "block", devString(dev))
	var out []child
	ents, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoSysfsEntry
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", base, err)
	}
	for _, e := range ents {
		dir := filepath.Join(base, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "partition")); err != nil {
			continue
		}
		d, err := readDevFile(filepath.Join(dir, "dev"))
		if err != nil {
			return nil, err
		}
		out = append(out, child{dev: d, via: "partition", name: e.Name()})
	}
	holders := filepath.Join(base, "holders")
	hs, err := os.ReadDir(holders)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", holders, err)
	}
	for _, h := range hs {
		d, err := readDevFile(filepath.Join(holders, h.Name(), "dev"))
		if err != nil {
			return nil, err
		}
		out = append(out, child{dev: d, via: "holder", name: h.Name()})
	}
	return out, nil
}

// errNoSysfsEntry says sysfs has no /sys/dev/block entry for a device.
var errNoSysfsEntry = errors.New("no sysfs entry")

func readDevFile(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	majStr, minStr, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	ma, err1 := strconv.ParseUint(majStr, 10, 32)
	mi, err2 := strconv.ParseUint(minStr, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read %s: not a device number: %q", p, b)
	}
	return unix.Mkdev(uint32(ma), uint32(mi)), nil
}

// sgInUse refuses a SCSI generic node whose SCSI device also has a block
// disk the host uses: through /dev/sgN QEMU reads and writes the same
// disk the host has mounted (or swaps on, or holds with LVM, md...).
// sysfs: /sys/dev/char/21:N/device is the SCSI device, its block/ the
// disks it has.
//
// A node sysfs has no SCSI device for is refused: the node exists, so
// the device does, and a missing entry (a sysfs root that is not this
// host's, a node for a device that went away) says nothing about its
// disk. A SCSI device without block/ has no disk the host could use
// (a tape, a changer, a disk without a bound sd driver).
func (p Policy) sgInUse(path string, rdev uint64) error {
	dev := filepath.Join(p.sysRoot(), "dev", "char", devString(rdev), "device")
	if fi, err := os.Stat(dev); err != nil || !fi.IsDir() {
		why := "not a directory"
		if err != nil {
			why = err.Error()
		}
		return fmt.Errorf("SCSI generic node %s (%s): sysfs has no SCSI device for it (%s), so whether the host uses its disk cannot be told; recreate the node (`udevadm trigger`) or check sysfs_root: %w", path, devString(rdev), why, ErrRefused)
	}
	dir := filepath.Join(dev, "block")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a SCSI device without a disk (tape, changer, ...)
	}
	if err != nil {
		return fmt.Errorf("cannot tell whether SCSI generic node %s is in use: %w", path, err)
	}
	for _, e := range ents {
		disk, err := readDevFile(filepath.Join(dir, e.Name(), "dev"))
		if err != nil {
			return fmt.Errorf("cannot tell whether SCSI generic node %s is in use: %w", path, err)
		}
		if err := p.blockInUse("/dev/"+e.Name(), disk); err != nil {
			return fmt.Errorf("SCSI generic node %s is the same device as disk %s: %w", path, e.Name(), err)
		}
	}
	return nil
}
