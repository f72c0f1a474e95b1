// Package remembered reads what libvirt's DAC driver remembers when
// remember_owner is on (src/security/security_util.c): before its first
// chown of a file it stores the owner the file had, "+UID:+GID", in the
// root-only xattr trusted.libvirt.security.dac, counts outstanding
// labellings in ref_dac and notes the host boot in timestamp_dac.
//
// On local filesystems only processes with CAP_SYS_ADMIN can write
// trusted.* xattrs. A value can still be stale: copied with the file by
// root (cp -a, rsync -X, a backup restored), a previous boot's (Label
// discards those as libvirt does, by timestamp_dac), or one libvirt moved
// from another image at a snapshot. What it is worth is the caller's to
// judge.
package remembered
