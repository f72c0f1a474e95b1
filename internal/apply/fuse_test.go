package apply

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

// TestLocalFUSEIsNotShared: an image on a local FUSE mount (bindfs) is
// recorded as on a local filesystem, by the mount's type rather than
// FUSE's statfs magic: no owner mark for other hosts is written on it,
// and release gives it back.
func TestLocalFUSEIsNotShared(t *testing.T) {
	f := newFixture(t)
	if _, err := exec.LookPath("bindfs"); err != nil {
		t.Skip("no bindfs")
	}
	src, mnt := f.path("src"), f.path("mnt")
	for _, d := range []string{src, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(src+"/disk.img", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(src+"/disk.img", 2000, 3000); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bindfs", src, mnt).CombinedOutput(); err != nil {
		t.Skipf("bindfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("fusermount", "-u", mnt).Run() })
	if err := f.prepare("vm1", "mnt/disk.img"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("src/disk.img", qemu)
	st, err := journal.LoadFile(journal.StatePath(f.state))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range st.All() {
		if e.Path == mnt+"/disk.img" && e.Shared {
			t.Errorf("the entry of a file on bindfs says it is on a shared filesystem")
		}
	}
	if _, err := unix.Getxattr(src+"/disk.img", OwnerXattr, nil); err != unix.ENODATA {
		t.Errorf("getxattr %s on the file behind bindfs = %v, want ENODATA: no mark for other hosts", OwnerXattr, err)
	}
	if err := f.runner(nil).Release("vm1", "migrated"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("src/disk.img", [2]uint32{2000, 3000})
}
