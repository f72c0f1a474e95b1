// Package doctor checks a host for what keeps the hook or QEMU from
// working: qemu.conf's mode and user, the installed hook and whether
// libvirtd has seen it, the boot unit, the watcher of cooperative mode,
// libvirt's QEMU state directories and, given a domain, whether QEMU will
// be able to open each of its resources after prepare. It returns
// findings; printing them is the command line's. The one change it makes,
// with Env.Fix, is to give libvirt's state directories to QEMU's user,
// through the same handle and policy checks as every chown of the hook.
package doctor
