// Package grant hands files to a running domain's QEMU before they are
// hot-plugged (strict mode's answer to virsh attach-disk and change-media),
// and takes them back early once detached. A grant is a prepare of a
// domain made of the running domain's identity, as libvirt's run
// directory gives it (qemuproc.Running), and one resource per path, the
// kind a disk or host device with that source would have: the same plan,
// checks, journal and log lines as libvirt's own prepare.
package grant
