package owner

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

// TestCharAllowlist makes real device nodes and checks them against the
// allowlist of each resource kind, with testdata/sys standing in for a
// host that has the hardware (an evdev keyboard, a TPM, SCSI disks, SEV,
// ...) and testdata/proc for its /proc/devices and mount table, where
// sda (behind sg0) is mounted. The owner of every node is checked after
// each Check: Check never changes anything.
func TestCharAllowlist(t *testing.T) {
	needRoot(t)
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	pol := Policy{SysRoot: abs("testdata/sys"), ProcRoot: abs("testdata/proc")}
	dir := t.TempDir()
	tests := []struct {
		name         string
		kind         domain.Kind
		major, minor uint32
		rdev         bool // the lookup named this exact number (usb, scsi, vfio)
		ok           bool
		msg          string
	}{
		{"evdev event node", domain.KindEvdev, 13, 67, false, true, ""},
		{"evdev dynamic event minor", domain.KindEvdev, 13, 301, false, true, ""},
		{"evdev named node that is a joystick", domain.KindEvdev, 13, 300, false, false, "js5"},
		{"evdev named node that is mice", domain.KindEvdev, 13, 63, false, false, "evdev input"},
		{"evdev named node that is /dev/null", domain.KindEvdev, 1, 3, false, false, "evdev input"},
		{"evdev named node that is uinput", domain.KindEvdev, 10, 223, false, false, "evdev input"},
		{"tpm0 on the misc major", domain.KindTPM, 10, 224, false, true, ""},
		{"tpmrm0", domain.KindTPM, 242, 0, false, true, ""},
		{"tpm named node that is kvm", domain.KindTPM, 10, 232, false, false, "TPM"},
		{"misc hostdev that is uinput", domain.KindHostdevChar, 10, 223, false, false, "uinput"},
		{"misc hostdev that is an event node", domain.KindHostdevChar, 13, 67, false, true, ""},
		{"misc hostdev that is msr", domain.KindHostdevChar, 202, 0, false, false, "msr"},
		{"chardev that is cpu msr", domain.KindChardevDev, 202, 0, false, false, "msr0"},
		{"chardev that is vcs1", domain.KindChardevDev, 7, 1, false, false, "vcs1"},
		{"chardev that is tty1", domain.KindChardevDev, 4, 1, false, false, "serial port"},
		{"chardev that is /dev/tty", domain.KindChardevDev, 5, 0, false, false, "serial port"},
		{"chardev that is sg0", domain.KindChardevDev, 21, 0, false, false, "serial port"},
		{"chardev ttyS0", domain.KindChardevDev, 4, 64, false, true, ""},
		{"chardev on a dynamic tty major", domain.KindChardevDev, 254, 0, false, true, ""},
		{"chardev pts without sysfs", domain.KindChardevDev, 136, 3, false, true, ""},
		{"scsi hostdev whose disk is mounted", domain.KindSCSI, 21, 0, true, false, "mounted at /data"},
		{"scsi hostdev whose disk is unused", domain.KindSCSI, 21, 1, true, true, ""},
		{"scsi hostdev that is not sg", domain.KindSCSI, 10, 232, false, false, "SCSI generic"},
		{"scsi hostdev sysfs does not know", domain.KindSCSI, 21, 5, true, false, "sysfs has no SCSI device"},
		{"vfio group", domain.KindVFIO, 240, 3, true, true, ""},
		{"vfio named node that is kvm", domain.KindVFIO, 10, 232, true, false, "VFIO"},
		{"usb device", domain.KindUSB, 189, 5, true, true, ""},
		{"render node", domain.KindRenderNode, 226, 128, false, true, ""},
		{"render node that is card0", domain.KindRenderNode, 226, 0, false, false, "render"},
		{"sev", domain.KindSEV, 10, 60, false, true, ""},
		{"sev named node that is kvm", domain.KindSEV, 10, 232, false, false, "kvm"},
		{"sgx named node that is sev", domain.KindSGX, 10, 60, false, false, "sgx"},
		{"vhost-scsi", domain.KindSCSIHost, 10, 125, false, true, ""},
		{"misc minor unknown to sysfs", domain.KindSCSIHost, 10, 99, false, false, "no sysfs entry"},
		{"dax memory backend", domain.KindMemory, 243, 0, false, true, ""},
		{"memory backend that is /dev/mem", domain.KindMemory, 1, 1, false, false, "dax"},
		{"disk that is a char device", domain.KindDisk, 189, 5, false, false, "may be no character device"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "n"+string(rune('a'+i%26))+strings.Repeat("x", i/26))
			if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(tc.major, tc.minor))); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(p)
			h, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			w := Want{Types: domain.TypeChar, Kind: tc.kind}
			if tc.rdev {
				w.Rdev = unix.Mkdev(tc.major, tc.minor)
			}
			err = pol.Check(h, w)
			switch {
			case tc.ok && err != nil:
				t.Errorf("Check(%s %d:%d) = %v, want nil", tc.kind, tc.major, tc.minor, err)
			case !tc.ok && !errors.Is(err, ErrRefused):
				t.Errorf("Check(%s %d:%d) = %v, want a refusal", tc.kind, tc.major, tc.minor, err)
			case !tc.ok && !strings.Contains(err.Error(), tc.msg):
				t.Errorf("Check(%s %d:%d) = %v, want it to say %q", tc.kind, tc.major, tc.minor, err, tc.msg)
			}
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil || st.Uid != 0 || st.Gid != 0 {
				t.Errorf("node owner after Check = %d:%d (%v), want 0:0", st.Uid, st.Gid, err)
			}
		})
	}
}

func TestReadCharMajors(t *testing.T) {
	got := readCharMajors("testdata/proc")
	for name, want := range map[string]uint32{"vfio": 240, "tpm": 241, "tpmrm": 242, "dax": 243, "misc": 10, "cpu/msr": 202} {
		if len(got[name]) != 1 || got[name][0] != want {
			t.Errorf("readCharMajors()[%q] = %v, want [%d]", name, got[name], want)
		}
	}
	if _, ok := got["loop"]; ok {
		t.Errorf("readCharMajors() has block major loop: %v", got)
	}
}
