package config

// Mode is how the hook shares the work with libvirt's own DAC driver. It
// follows qemu.conf's dynamic_ownership, because that decides whether
// libvirt labels at all; the hook cannot change it.
type Mode string

// Modes.
const (
	// Cooperative: dynamic_ownership = 1 (libvirt's default). libvirt
	// labels at start and during the run (hot-plug, media change,
	// snapshots, block jobs, transient disks); the hook checks and records
	// at prepare, before libvirt labels, and gives back at release, after
	// libvirt's restore, whatever libvirt got wrong.
	Cooperative Mode = "cooperative"
	// Strict: dynamic_ownership = 0. The hook is the only program that
	// changes owners; live additions need `libvirt-dac-hook grant`.
	Strict Mode = "strict"
)

// Mode reports the mode qemu.conf puts the hook in.
func (q QEMU) Mode() Mode {
	if q.DynamicOwnershipEnabled() {
		return Cooperative
	}
	return Strict
}
