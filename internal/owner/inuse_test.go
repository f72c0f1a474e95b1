package owner

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

const swapsHeader = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"

// fakeProc makes a procfs stand-in with self/mountinfo and swaps.
func fakeProc(t *testing.T, mountinfo, swaps string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := "22 27 0:21 / /proc rw,relatime - proc proc rw\n" +
		"28 27 0:25 / /run rw,nosuid - tmpfs tmpfs rw\n"
	if err := os.WriteFile(filepath.Join(dir, "self", "mountinfo"), []byte(base+mountinfo), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "swaps"), []byte(swapsHeader+swaps), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fakeSys makes a sysfs stand-in: for each device "maj:min", its
// partitions (name → "maj:min") and holders (name → "maj:min").
type sysDev struct {
	parts, holders map[string]string
}

func fakeSys(t *testing.T, devs map[string]sysDev) string {
	t.Helper()
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for dev, d := range devs {
		base := filepath.Join(root, "dev", "block", dev)
		write(filepath.Join(base, "dev"), dev+"\n")
		write(filepath.Join(base, "queue", "rotational"), "0\n") // a non-partition subdir
		for name, pd := range d.parts {
			write(filepath.Join(base, name, "partition"), "1\n")
			write(filepath.Join(base, name, "dev"), pd+"\n")
		}
		if err := os.MkdirAll(filepath.Join(base, "holders"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, hd := range d.holders {
			write(filepath.Join(base, "holders", name, "dev"), hd+"\n")
		}
	}
	return root
}

func TestBlockDeviceInUse(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	// Device numbers from the local/experimental range no host uses.
	mk := func(name string, minor uint32) string {
		p := filepath.Join(dir, name)
		if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(240, minor))); err != nil {
			t.Fatal(err)
		}
		return p
	}
	disk := mk("disk", 0)
	part := mk("part", 1)
	spaced := mk("swap dev", 9)
	ghost := mk("ghost", 7)

	sys := fakeSys(t, map[string]sysDev{
		"240:0": {
			parts:   map[string]string{"disk1": "240:1", "disk2": "240:2"},
			holders: map[string]string{},
		},
		"240:1": {},
		"240:2": {holders: map[string]string{"dm-0": "240:3"}},
		"240:3": {holders: map[string]string{"dm-1": "240:4"}},
		// A cycle must end the walk, not hang it.
		"240:4": {holders: map[string]string{"dm-back": "240:2"}},
	})
	want := Want{Types: domain.TypeBlock}
	tests := []struct {
		name       string
		mountinfo  string
		swaps      string
		path       string
		refuse     string // "" for allowed
		otherError bool
	}{
		{"unused", "", "", disk, "", false},
		{"device mounted", "40 27 240:0 / /mnt/data rw - ext4 /dev/whatever rw\n", "", disk,
			"block device " + disk + " (240:0) is mounted at /mnt/data: giving it to QEMU would hand it the host's filesystem", false},
		{"mount point with a space", "40 27 240:0 / /mnt/my\\040data rw - ext4 x rw\n", "", disk, "is mounted at /mnt/my data", false},
		{"device mounted, anonymous dev (btrfs)", "40 27 0:55 / /srv rw shared:1 - btrfs " + disk + " rw\n", "", disk,
			"is mounted at /srv", false},
		{"partition mounted", "40 27 240:1 / /boot rw - ext4 /dev/x rw\n", "", disk,
			"block device " + disk + " (240:0) holds mounted partition disk1 (240:1) at /boot", false},
		{"holder of a partition mounted", "40 27 240:3 / / rw - ext4 /dev/mapper/vg-root rw\n", "", disk,
			"holds mounted holder dm-0 (240:3) at /", false},
		{"holder two levels down mounted", "40 27 240:4 / /home rw - ext4 /dev/mapper/home rw\n", "", disk,
			"holds mounted holder dm-1 (240:4) at /home", false},
		{"partition itself, unused", "", "", part, "", false},
		{"a device sysfs has no entry for", "", "", ghost, "block device " + ghost + " (240:7): sysfs has no entry for it", false},
		{"active swap", "", disk + "\tpartition\t1048572\t0\t-2\n", disk,
			"block device " + disk + " (240:0) is active swap (" + disk + ")", false},
		{"swap path with a space", "", strings.ReplaceAll(spaced, " ", "\\040") + " partition 1 0 -2\n", spaced, "is active swap", false},
		{"swap on a partition", "", part + " partition 1 0 -2\n", disk, "holds partition disk1 (240:1), active swap", false},
		{"swap file elsewhere", "", "/swapfile file 1 0 -2\n", disk, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol := Policy{ProcRoot: fakeProc(t, tc.mountinfo, tc.swaps), SysRoot: sys}
			h, err := Open(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			err = pol.Check(h, want)
			switch {
			case tc.refuse == "" && err != nil:
				t.Errorf("Check(%s) = %v, want nil", tc.path, err)
			case tc.refuse != "" && (!errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.refuse)):
				t.Errorf("Check(%s) = %v, want refusal containing %q", tc.path, err, tc.refuse)
			}
		})
	}

	t.Run("no mount table", func(t *testing.T) {
		h, err := Open(disk)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		err = Policy{ProcRoot: t.TempDir(), SysRoot: sys}.Check(h, want)
		if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "cannot tell whether") {
			t.Errorf("Check without a mount table = %v, want an error that is not a policy refusal", err)
		}
	})
	// Whether a regular file is a mount of a protected directory is in
	// the mount table too: without one, Check fails closed.
	t.Run("regular files need the mount table", func(t *testing.T) {
		f := filepath.Join(dir, "img")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := Open(f)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		err = (Policy{ProcRoot: t.TempDir()}).Check(h, Want{Types: domain.TypeRegular})
		if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "read mount table") {
			t.Errorf("Check(regular file) without a mount table = %v, want an error that is not a policy refusal", err)
		}
	})
}

// loopDevice attaches a fresh file as a loop device, detached at cleanup.
// prep, if not nil, runs on the file first (e.g. to partition it); the
// kernel then scans it for partitions.
func loopDevice(t *testing.T, size int64, prep func(img string)) string {
	t.Helper()
	needRoot(t)
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s for a real loop device: %v", tool, err)
		}
	}
	img := filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	args := []string{"-f", "--show", img}
	if prep != nil {
		prep(img)
		args = append(args, "-P")
	}
	out, err := exec.Command("losetup", args...).CombinedOutput()
	if err != nil {
		t.Skipf("cannot attach a loop device here (no /dev/loop-control, or in a container?): losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// TestRealLoopDevice uses the host's own /proc and /sys: an unmounted loop
// device may be given away, a mounted one may not.
func TestRealLoopDevice(t *testing.T) {
	dev := loopDevice(t, 32<<20, nil)
	want := Want{Types: domain.TypeBlock}
	check := func() error {
		h, err := Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		return Policy{}.Check(h, want)
	}
	if err := check(); err != nil {
		t.Fatalf("Check(unmounted %s) = %v, want nil", dev, err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", dev, err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount here: %v: %s", err, out)
	}
	mounted := true
	unmount := func() {
		if mounted {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", mnt, err, out)
			}
			mounted = false
		}
	}
	t.Cleanup(unmount) // runs before the loop device is detached
	err := check()
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "is mounted at "+mnt) {
		t.Errorf("Check(mounted %s) = %v, want refusal naming %s", dev, err, mnt)
	}
	unmount()
	if err := check(); err != nil {
		t.Errorf("Check(%s after umount) = %v, want nil", dev, err)
	}
}

// TestRealLoopPartition: a whole disk whose partition is mounted is refused
// by name of the partition.
func TestRealLoopPartition(t *testing.T) {
	if _, err := exec.LookPath("parted"); err != nil {
		t.Skipf("needs parted to partition a loop device: %v", err)
	}
	dev := loopDevice(t, 64<<20, func(img string) {
		if out, err := exec.Command("parted", "-s", img, "mklabel", "msdos", "mkpart", "primary", "ext4", "1MiB", "100%").CombinedOutput(); err != nil {
			t.Skipf("parted: %v: %s", err, out)
		}
	})
	part := dev + "p1"
	if _, err := os.Stat(part); err != nil {
		// The kernel may lack the msdos partition parser; partx adds
		// the partition by ioctl from the table it reads itself.
		if out, err := exec.Command("partx", "-a", dev).CombinedOutput(); err != nil {
			t.Skipf("no partition device %s and partx -a failed: %v: %s", part, err, out)
		}
	}
	if _, err := os.Stat(part); err != nil {
		t.Skipf("no partition device %s (no devtmpfs node for it here?): %v", part, err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", part).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", part, err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", part, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	h, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	err = Policy{}.Check(h, Want{Types: domain.TypeBlock})
	name := filepath.Base(part)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "holds mounted partition "+name) || !strings.Contains(err.Error(), mnt) {
		t.Errorf("Check(%s with %s mounted) = %v, want refusal naming %s and %s", dev, part, err, name, mnt)
	}
}

// TestClaimedBlockDevice: a block device some kernel user holds
// exclusively (here: this test, standing in for device-mapper or a mount
// in another namespace, which the mount table would not show) is refused.
func TestClaimedBlockDevice(t *testing.T) {
	dev := loopDevice(t, 8<<20, nil)
	h, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := Want{Types: domain.TypeBlock}
	if err := (Policy{}).Check(h, want); err != nil {
		t.Fatalf("Check(%s) unclaimed = %v, want nil", dev, err)
	}
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = (Policy{}).Check(h, want)
	unix.Close(fd)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "in use by the kernel") {
		t.Fatalf("Check(%s) while claimed = %v, want a refusal saying it is in use", dev, err)
	}
}

func TestProcLinksRefused(t *testing.T) {
	h, err := Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := (Policy{}).Check(h, Want{Types: domain.TypeRegular}); !errors.Is(err, ErrRefused) {
		t.Fatalf("Check(/proc/self/exe) = %v, want a refusal", err)
	}
}
