package owner

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestSharedFS(t *testing.T) {
	for _, tc := range []struct {
		fstype string
		want   bool
	}{
		{"nfs", true}, {"nfs4", true}, {"cifs", true}, {"smb3", true}, {"ceph", true},
		{"fuse.glusterfs", true}, {"fuse.ceph-fuse", true}, {"gfs2", true}, {"ocfs2", true},
		{"lustre", true}, {"gpfs", true}, {"beegfs", true},
		{"fuse", false}, {"fuse.bindfs", false}, {"fuse.sshfs", false}, {"fuseblk", false},
		{"ext4", false}, {"xfs", false}, {"tmpfs", false}, {"", false}, {"glusterfs-but-not", false},
	} {
		if got := SharedFS(tc.fstype); got != tc.want {
			t.Errorf("SharedFS(%q) = %v, want %v", tc.fstype, got, tc.want)
		}
	}
	if FSShared(fuseMagic) {
		t.Errorf("FSShared(FUSE's magic) = true: every local FUSE mount would be taken for a shared one")
	}
	if !FSShared(0x6969) || FSName(0x6969) != "nfs" {
		t.Errorf("FSShared(NFS's magic) = false or named %q", FSName(0x6969))
	}
}

func TestMountFSType(t *testing.T) {
	table := []byte(`22 1 0:21 / /proc rw,nosuid - proc proc rw
61 27 0:41 / /srv/local rw,nosuid,nodev,relatime - fuse /tmp/src rw,user_id=0,group_id=0
62 27 0:42 / /srv/gluster rw,relatime shared:5 - fuse.glusterfs gl1:/vol rw,user_id=0
63 27 0:43 / /srv/with\040space rw master:1 - fuse.ceph-fuse ceph-fuse rw
`)
	for _, tc := range []struct {
		id   uint64
		want string
		ok   bool
	}{{61, "fuse", true}, {62, "fuse.glusterfs", true}, {63, "fuse.ceph-fuse", true}, {6, "", false}, {2, "", false}} {
		got, ok := mountFSType(table, tc.id)
		if got != tc.want || ok != tc.ok {
			t.Errorf("mountFSType(%d) = %q, %v, want %q, %v", tc.id, got, ok, tc.want, tc.ok)
		}
	}
}

// TestLocalFUSEIsNotShared: a file on a bindfs mount (FUSE, local) is
// not on a shared filesystem, whatever FUSE's statfs magic says; the same
// file through its own directory is not either.
func TestLocalFUSEIsNotShared(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("bindfs"); err != nil {
		t.Skip("no bindfs")
	}
	src, mnt := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "disk.img"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bindfs", src, mnt).CombinedOutput(); err != nil {
		t.Skipf("bindfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("fusermount", "-u", mnt).Run() })
	h, err := Open(filepath.Join(mnt, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sf, err := h.Statfs()
	if err != nil || uint32(sf.Type) != fuseMagic {
		t.Fatalf("statfs of the bindfs file = %#x, %v; want FUSE's magic", sf.Type, err)
	}
	ft, err := h.FSType()
	if err != nil || ft != "fuse" {
		t.Errorf("FSType of a file on bindfs = %q, %v; want \"fuse\"", ft, err)
	}
	if h.Shared() {
		t.Errorf("a file on a local bindfs mount is taken for one on a shared filesystem")
	}
}
