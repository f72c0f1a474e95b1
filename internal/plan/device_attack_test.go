package plan_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

func atkDevices(devices string) string {
	return `<domain type='qemu'><name>vm</name><memory>65536</memory><os><type>hvm</type></os><devices>` + devices + `</devices></domain>`
}

// fakeSG adds SCSI device 0:0:0:0 with generic node sg0 (21:0) and disk
// sda with device number disk to the fake sysfs, the way the kernel lays
// them out, and makes the sg0 node.
func (tr *atkTree) fakeSG(disk uint64) {
	sys := tr.sys.Sys
	dev := filepath.Join(sys, "bus", "scsi", "devices", "0:0:0:0")
	sg := filepath.Join(dev, "scsi_generic", "sg0")
	tr.write(filepath.Join(sg, "dev"), "21:0\n", 0)
	tr.write(filepath.Join(dev, "block", "sda", "dev"), fmt.Sprintf("%d:%d\n", unix.Major(disk), unix.Minor(disk)), 0)
	tr.write(filepath.Join(sys, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(disk), unix.Minor(disk)), ".keep"), "", 0)
	tr.write(filepath.Join(sys, "class", "scsi_generic", ".keep"), "", 0)
	tr.symlink("../..", filepath.Join(sg, "device"))
	tr.symlink(filepath.Join(sys, "class", "scsi_generic"), filepath.Join(sg, "subsystem"))
	tr.symlink(sg, filepath.Join(sys, "dev", "char", "21:0"))
	tr.mknod(filepath.Join(tr.sys.Dev, "sg0"), unix.S_IFCHR, 21, 0)
}

// rootDevice is the device number of the filesystem mounted at /.
func rootDevice(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == "/" {
			var ma, mi uint32
			if _, err := fmt.Sscanf(f[2], "%d:%d", &ma, &mi); err == nil {
				return unix.Mkdev(ma, mi)
			}
		}
	}
	t.Skip("no / in the mount table")
	return 0
}

// TestDeviceAllowlist: device nodes by resource kind, with the tree's fake
// sysfs (empty unless a case fills it) standing in for the host's.
func TestDeviceAllowlist(t *testing.T) {
	scsi := `<hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/><address bus='0' target='0' unit='0'/></source></hostdev>`
	tests := []struct {
		name  string
		setup func(tr *atkTree) (xml, node string)
		msg   string // "" means it must build and hand the node over
	}{
		{"tpm passthrough on 10:224", func(tr *atkTree) (string, string) {
			n := filepath.Join(tr.sys.Dev, "tpm0")
			tr.mknod(n, unix.S_IFCHR, 10, 224)
			return atkDevices(`<tpm model='tpm-tis'><backend type='passthrough'><device path='` + n + `'/></backend></tpm>`), n
		}, ""},
		{"tpm passthrough naming kvm", func(tr *atkTree) (string, string) {
			n := filepath.Join(tr.sys.Dev, "tpm0")
			tr.mknod(n, unix.S_IFCHR, 10, 232)
			return atkDevices(`<tpm model='tpm-tis'><backend type='passthrough'><device path='` + n + `'/></backend></tpm>`), n
		}, "must be a TPM"},
		{"evdev input that is /dev/null", func(tr *atkTree) (string, string) {
			n := filepath.Join(tr.sys.Dev, "input", "event0")
			tr.mknod(n, unix.S_IFCHR, 1, 3)
			return atkDevices(`<input type='evdev'><source dev='` + n + `'/></input>`), n
		}, "evdev input"},
		{"evdev input that is a mouse node", func(tr *atkTree) (string, string) {
			n := filepath.Join(tr.sys.Dev, "input", "event0")
			tr.mknod(n, unix.S_IFCHR, 13, 32)
			return atkDevices(`<input type='evdev'><source dev='` + n + `'/></input>`), n
		}, "evdev input"},
		{"evdev input", func(tr *atkTree) (string, string) {
			n := filepath.Join(tr.sys.Dev, "input", "event0")
			tr.mknod(n, unix.S_IFCHR, 13, 64)
			return atkDevices(`<input type='evdev'><source dev='` + n + `'/></input>`), n
		}, ""},
		{"serial chardev that is cpu msr", func(tr *atkTree) (string, string) {
			n := filepath.Join(tr.sys.Dev, "ttyS0")
			tr.mknod(n, unix.S_IFCHR, 202, 0)
			return atkDevices(`<serial type='dev'><source path='` + n + `'/><target port='0'/></serial>`), n
		}, "serial port"},
		{"serial chardev that is vcs1", func(tr *atkTree) (string, string) {
			n := filepath.Join(tr.sys.Dev, "ttyS0")
			tr.mknod(n, unix.S_IFCHR, 7, 1)
			return atkDevices(`<serial type='dev'><source path='` + n + `'/><target port='0'/></serial>`), n
		}, "serial port"},
		{"scsi hostdev whose disk holds the root filesystem", func(tr *atkTree) (string, string) {
			tr.fakeSG(rootDevice(tr.t))
			return atkDevices(scsi), filepath.Join(tr.sys.Dev, "sg0")
		}, "mounted at /"},
		{"scsi hostdev whose disk is unused", func(tr *atkTree) (string, string) {
			tr.fakeSG(unix.Mkdev(8, 240))
			return atkDevices(scsi), filepath.Join(tr.sys.Dev, "sg0")
		}, ""},
		{"scsi hostdev sysfs has no dev/char entry for", func(tr *atkTree) (string, string) {
			tr.fakeSG(rootDevice(tr.t))
			if err := os.Remove(filepath.Join(tr.sys.Sys, "dev", "char", "21:0")); err != nil {
				tr.t.Fatal(err)
			}
			return atkDevices(scsi), filepath.Join(tr.sys.Dev, "sg0")
		}, "sysfs has no SCSI device for it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newAtkTree(t)
			env := tr.env()
			env.Policy.SysRoot = tr.sys.Sys
			tr.mkdir(filepath.Join(tr.sys.Sys, "dev", "char"))
			xml, node := tt.setup(tr)
			if tt.msg == "" {
				p, err := plan.Build(tr.parse(xml), env)
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				defer p.Close()
				found := false
				for _, s := range p.Steps {
					found = found || s.Path == node && s.Action == plan.Chown
				}
				if !found {
					t.Errorf("plan does not chown %s:\n%s", node, atkSummary(p, tr.root))
				}
				return
			}
			wantRefusal(t, tr.guard(xml, env, node), tt.msg)
		})
	}
}

// TestSCSIGenericReadsConfiguredSysfs: with only the lookups' sysfs root
// configured (as sysfs_root sets it), the in-use check of a SCSI generic
// node reads the same tree, where its disk holds the root filesystem, not
// the real /sys, which has no such node.
func TestSCSIGenericReadsConfiguredSysfs(t *testing.T) {
	tr := newAtkTree(t)
	env := tr.env()
	env.Policy.SysRoot = ""
	tr.mkdir(filepath.Join(tr.sys.Sys, "dev", "char"))
	tr.fakeSG(rootDevice(t))
	wantRefusal(t, tr.guard(atkDevices(`<hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/><address bus='0' target='0' unit='0'/></source></hostdev>`), env, filepath.Join(tr.sys.Dev, "sg0")), "mounted at /")
}
