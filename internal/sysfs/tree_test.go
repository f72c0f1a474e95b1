package sysfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// tree builds a fake sysfs and /dev under t.TempDir(), with real
// directories, files, symlinks and (as root) device nodes.
type tree struct {
	t     *testing.T
	root  Root
	nodes bool // device nodes are created (needs root)
}

func newTree(t *testing.T) *tree {
	t.Helper()
	base := t.TempDir()
	tr := &tree{t: t, root: Root{Sys: filepath.Join(base, "sys"), Dev: filepath.Join(base, "dev")}}
	tr.nodes = os.Geteuid() == 0
	if !tr.nodes {
		t.Log("not root: fake /dev nodes are not created, so node numbers are not cross-checked with mknod")
	}
	for _, d := range []string{tr.root.Sys, tr.root.Dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func (tr *tree) dir(rel string) {
	tr.t.Helper()
	if err := os.MkdirAll(filepath.Join(tr.root.Sys, rel), 0o755); err != nil {
		tr.t.Fatal(err)
	}
}

// file writes a sysfs attribute, with the trailing newline sysfs adds.
func (tr *tree) file(rel, content string) {
	tr.t.Helper()
	p := filepath.Join(tr.root.Sys, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content+"\n"), 0o444); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *tree) link(rel, target string) {
	tr.t.Helper()
	p := filepath.Join(tr.root.Sys, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		tr.t.Fatal(err)
	}
}

// node creates a character device node under the fake /dev, as root only.
func (tr *tree) node(rel string, major, minor uint32) {
	tr.t.Helper()
	if !tr.nodes {
		return
	}
	p := filepath.Join(tr.root.Dev, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil {
		tr.t.Fatalf("mknod %s: %v", p, err)
	}
}

// usb adds a USB device the way the kernel lays it out: the real
// directory under devices/, a link to it in bus/usb/devices, and the
// /dev/bus/usb node udev would create. devAttr "" leaves out the dev
// attribute; "auto" writes the number the kernel would.
func (tr *tree) usb(name string, bus, dev uint32, vendor, product, devAttr string) {
	tr.t.Helper()
	devDir := filepath.Join("devices/pci0000:00/0000:00:14.0", name)
	tr.file(devDir+"/idVendor", vendor)
	tr.file(devDir+"/idProduct", product)
	tr.file(devDir+"/busnum", itoa(bus))
	tr.file(devDir+"/devnum", itoa(dev))
	minor := (bus-1)*128 + dev - 1
	switch devAttr {
	case "":
	case "auto":
		tr.file(devDir+"/dev", "189:"+itoa(minor))
	default:
		tr.file(devDir+"/dev", devAttr)
	}
	tr.link("bus/usb/devices/"+name, "../../../"+devDir)
	tr.node(filepath.Join("bus/usb", pad3(bus), pad3(dev)), 189, minor)
}

// checkNode stats the node a lookup returned and compares its type and
// number with the Device: the lookup's Path and numbers must agree with
// what mknod (standing in for udev) created.
func (tr *tree) checkNode(d Device) {
	tr.t.Helper()
	if !tr.nodes {
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(d.Path, &st); err != nil {
		tr.t.Fatalf("lstat %s: %v", d.Path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		tr.t.Errorf("%s: mode %o, want a character device", d.Path, st.Mode)
	}
	if maj, mnr := unix.Major(st.Rdev), unix.Minor(st.Rdev); maj != d.Major || mnr != d.Minor {
		tr.t.Errorf("%s: node is %d:%d, Device says %d:%d", d.Path, maj, mnr, d.Major, d.Minor)
	}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func pad3(n uint32) string { return fmt.Sprintf("%03d", n) }
