// Package sharedfs tests the hook across hosts on real shared filesystems,
// without libvirt: a single-brick GlusterFS volume over loopback (FUSE),
// an xattr-less FUSE mount standing for NFS (bindfs --xattr-none, declared
// shared through qemu.conf's shared_filesystems) and one that squashes
// root. Two "hosts" are two state directories with their own host ids and
// configurations; the test runs the built hook binary as libvirtd would,
// in the order of a live migration, and checks every owner with stat
// after every step.
//
// The tests are behind the e2e build tag, because they start glusterd,
// create a volume and mount filesystems (and take all of it down again).
// Without glusterd or bindfs they skip, except under CI=true:
//
//	sudo go test -tags e2e -count=1 -v ./internal/e2e/sharedfs/
package sharedfs
