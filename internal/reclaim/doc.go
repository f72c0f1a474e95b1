// Package reclaim finds the files a host's earlier use of libvirt's own
// DAC driver left owned by QEMU's user, decides who each should belong to,
// and says why.
//
// Scan walks directory trees (never following a symlink, never crossing
// into another filesystem below a root it was given) and collects facts
// about each regular file and block device owned by QEMU's user: where it
// is, what libvirt's remember_owner xattrs say, who owns its directory.
// InUse collects the inodes a running domain uses: those the hook's
// journal records and those a running QEMU process has open. Decide is
// pure: facts in, verdict out. Env.Judge decides every file found against
// the host as it is; Env.GiveBack changes owners, write-ahead: under the
// journal's lock, each file is judged again on its handle, recorded
// durably, then chowned through that handle and forgotten.
package reclaim
