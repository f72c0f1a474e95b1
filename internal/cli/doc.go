// Package cli is the command line of libvirt-dac-hook: hook mode (how
// libvirtd calls /etc/libvirt/hooks/qemu) and the commands an admin runs by
// hand (plan, status, restore, doctor, version). It maps every failure to
// one line on stderr and a documented exit code; nothing below it exits.
package cli
