// Package config reads the two configuration files the hook depends on:
// libvirt's /etc/libvirt/qemu.conf, for who QEMU runs as and whether
// libvirt's own DAC labelling is on, and the hook's own
// /etc/libvirt/libvirt-dac-hook.conf, for policy (protected paths, state
// directory, dry run, ...). Both use libvirt's syntax, parsed by the virconf
// package.
//
// It also turns user and group specifications ("+107", "libvirt-qemu",
// "user:group" seclabels) into numeric ids the way libvirt does. Names are
// looked up through os/user; the hook is built with CGO_ENABLED=0, so that
// means /etc/passwd and /etc/group only, not NSS modules such as LDAP or
// sssd. Accounts that exist only in such a directory must be given as "+N".
//
// The package reads files and the account databases; it changes nothing.
package config
