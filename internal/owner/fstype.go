package owner

// Filesystem types (statfs f_type) the hook needs to tell apart: the one
// table of magic numbers, with what each means for ownership.
type fsType struct {
	name string
	// shared: other hosts mount it too, so a migrated domain's
	// destination keeps using its files.
	shared bool
	// noOwners: the filesystem has no per-file owners (chown fails or is
	// ignored), so QEMU's access comes from mount options.
	noOwners bool
}

var fsTypes = map[uint32]fsType{
	0x6969:     {name: "nfs", shared: true},
	0xfe534d42: {name: "smb2", shared: true},
	0xff534d42: {name: "cifs", shared: true},
	0x00c36400: {name: "ceph", shared: true},
	0x01161970: {name: "gfs2", shared: true},
	0x7461636f: {name: "ocfs2", shared: true},
	0x65735546: {name: "fuse", shared: true}, // GlusterFS native mounts are FUSE
	0x0bd00bd0: {name: "lustre", shared: true},
	0x47504653: {name: "gpfs", shared: true},
	0x19830326: {name: "beegfs", shared: true},
	0xef53:     {name: "ext4"},
	0x58465342: {name: "xfs"},
	0x9123683e: {name: "btrfs"},
	0x01021994: {name: "tmpfs"},
	0x2fc12fc1: {name: "zfs"},
	0x794c7630: {name: "overlayfs"},
	0x4d44:     {name: "vfat", noOwners: true},
	0x2011bab0: {name: "exfat", noOwners: true},
	0x5346544e: {name: "ntfs3"},
	0x9fa0:     {name: "proc"},
	0x62656572: {name: "sysfs"},
	0x1373:     {name: "devfs"},
}

// FSName names a statfs type, or "" when the hook does not know it.
func FSName(t int64) string { return fsTypes[uint32(t)].name }

// FSShared reports whether a statfs type is a filesystem shared between
// hosts.
func FSShared(t int64) bool { return fsTypes[uint32(t)].shared }

// FSNoOwners reports whether a statfs type keeps no per-file owners.
func FSNoOwners(t int64) bool { return fsTypes[uint32(t)].noOwners }
