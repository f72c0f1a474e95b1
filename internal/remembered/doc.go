// Package remembered reads what libvirt's DAC driver remembers when
// remember_owner is on (src/security/security_util.c): before its first
// chown of a file it stores the owner the file had, "+UID:+GID", in the
// root-only xattr trusted.libvirt.security.dac, counts outstanding
// labellings in ref_dac and notes the host boot in timestamp_dac.
//
// Only processes with CAP_SYS_ADMIN can write trusted.* xattrs, so a
// value found there was written by root; whether it still describes the
// file (it may be a previous boot's, or one libvirt moved from another
// image at a snapshot) is for the caller to judge.
package remembered
