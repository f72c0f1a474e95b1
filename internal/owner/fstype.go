package owner

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Filesystem types the hook needs to tell apart: the one table, by the
// type name mountinfo gives, with the statfs magic where the kernel has
// one, and what each means for ownership.
type fsType struct {
	// magic is statfs's f_type; 0 for FUSE filesystems, which all share
	// FUSE's magic and are told apart by mountinfo's "fuse.<subtype>".
	magic uint32
	// shared: other hosts mount it too, so a migrated domain's
	// destination keeps using its files.
	shared bool
	// noOwners: the filesystem has no per-file owners (chown fails or is
	// ignored), so QEMU's access comes from mount options.
	noOwners bool
}

// fuseMagic is FUSE_SUPER_MAGIC: every FUSE filesystem, shared (GlusterFS,
// CephFS's ceph-fuse) or local (bindfs, sshfs's view of one host).
const fuseMagic = 0x65735546

var fsTypes = map[string]fsType{
	"nfs":   {magic: 0x6969, shared: true},
	"nfs4":  {shared: true},
	"smb2":  {magic: 0xfe534d42, shared: true},
	"smb3":  {shared: true},
	"cifs":  {magic: 0xff534d42, shared: true},
	"ceph":  {magic: 0x00c36400, shared: true},
	"gfs2":  {magic: 0x01161970, shared: true},
	"ocfs2": {magic: 0x7461636f, shared: true},
	// FUSE's magic says nothing; the subtype does.
	"fuse":           {magic: fuseMagic},
	"fuseblk":        {},
	"fuse.glusterfs": {shared: true},
	"fuse.ceph":      {shared: true}, // ceph-fuse
	"fuse.ceph-fuse": {shared: true},
	"fuse.quobyte":   {shared: true},
	"fuse.mfs":       {shared: true}, // MooseFS
	"fuse.lizardfs":  {shared: true},
	"lustre":         {magic: 0x0bd00bd0, shared: true},
	"gpfs":           {magic: 0x47504653, shared: true},
	"beegfs":         {magic: 0x19830326, shared: true},
	"ext4":           {magic: 0xef53},
	"xfs":            {magic: 0x58465342},
	"btrfs":          {magic: 0x9123683e},
	"tmpfs":          {magic: 0x01021994},
	"zfs":            {magic: 0x2fc12fc1},
	"overlay":        {magic: 0x794c7630},
	"vfat":           {magic: 0x4d44, noOwners: true},
	"exfat":          {magic: 0x2011bab0, noOwners: true},
	"ntfs3":          {magic: 0x5346544e},
	"proc":           {magic: 0x9fa0},
	"sysfs":          {magic: 0x62656572},
	"devtmpfs":       {magic: 0x1373},
}

// byMagic is fsTypes by statfs magic.
var byMagic = func() map[uint32]string {
	m := make(map[uint32]string, len(fsTypes))
	for name, t := range fsTypes {
		if t.magic != 0 {
			m[t.magic] = name
		}
	}
	return m
}()

// FSName names a statfs type, or "" when the hook does not know it.
// Every FUSE filesystem is "fuse".
func FSName(t int64) string { return byMagic[uint32(t)] }

// SharedFS reports whether a filesystem of type fstype, as mountinfo
// names it ("nfs4", "fuse.glusterfs"), is shared between hosts. A FUSE
// filesystem is shared only by its subtype: plain "fuse" (bindfs, and
// the like) is local.
func SharedFS(fstype string) bool { return fsTypes[fstype].shared }

// FSShared reports whether a statfs type is a filesystem shared between
// hosts. FUSE's one magic cannot tell: it is not shared here; ask
// Handle.Shared, which reads the mount's subtype.
func FSShared(t int64) bool { return SharedFS(FSName(t)) }

// FSNoOwners reports whether a statfs type keeps no per-file owners.
func FSNoOwners(t int64) bool { return fsTypes[FSName(t)].noOwners }

// FSType names the type of the filesystem holding the inode, as
// mountinfo does: by statfs magic, and for FUSE by the mount's entry in
// /proc/self/mountinfo ("fuse.glusterfs"), found by the mount id statx
// gives for the descriptor. "" when the hook does not know the type.
func (h *Handle) FSType() (string, error) {
	sf, err := h.Statfs()
	if err != nil {
		return "", err
	}
	if uint32(sf.Type) != fuseMagic {
		return FSName(int64(sf.Type)), nil
	}
	var stx unix.Statx_t
	err = unix.Statx(h.fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_MNT_ID, &stx)
	runtime.KeepAlive(h)
	if err != nil {
		return "", fmt.Errorf("statx %s: %w", h.Path, err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return "", fmt.Errorf("statx %s: the kernel gives no mount id", h.Path)
	}
	b, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", mountinfoPath, err)
	}
	t, ok := mountFSType(b, stx.Mnt_id)
	if !ok {
		return "", fmt.Errorf("%s: no mount %d in %s", h.Path, stx.Mnt_id, mountinfoPath)
	}
	return t, nil
}

// Shared reports whether the inode held is on a filesystem shared
// between hosts (SharedFS of its FSType). A type that cannot be read is
// not shared: the hook then gives the file back at release as on a local
// filesystem.
func (h *Handle) Shared() bool {
	t, err := h.FSType()
	return err == nil && SharedFS(t)
}

// mountinfoPath is this process's mount table.
var mountinfoPath = "/proc/self/mountinfo"

// mountFSType finds mount id in a mountinfo table and returns its type.
func mountFSType(table []byte, id uint64) (string, bool) {
	for _, m := range ParseMounts(table) {
		if m.ID == id {
			return m.FSType, m.FSType != ""
		}
	}
	return "", false
}
