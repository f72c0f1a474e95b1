// Package cli is the command line of libvirt-dac-hook: hook mode (how
// libvirtd calls /etc/libvirt/hooks/qemu) and the commands an admin runs by
// hand (plan, grant, revoke, status, restore, doctor, reclaim, boot,
// forget-host, watch, version). Each command parses its arguments, calls
// the package that does the work (plan, apply, grant, doctor, reclaim,
// coop/watch) and prints what it returns. It sets up logging once, maps
// every failure to one line on stderr and a documented exit code; nothing
// below it exits.
package cli
