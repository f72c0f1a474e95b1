// Package sysfs finds the host device nodes behind passthrough devices
// (<hostdev> USB, SCSI generic, PCI and mediated devices) by reading sysfs
// the way libvirt does, so the hook chowns exactly the nodes QEMU opens.
//
// It only reads: it never opens, stats or changes anything under /dev. A
// Device names the node and the device number the kernel says the node
// must have; the owner package opens the node once and checks that number
// on the handle before changing it, so a node swapped after the lookup is
// refused rather than chowned.
//
// Every string that comes from a domain XML (PCI addresses, mdev UUIDs, SCSI
// adapter names) is parsed into numbers and formatted again before it
// becomes part of a path, so no XML value can add "/" or ".." to a path.
// Names read back from sysfs (iommu group links, scsi_generic entries) are
// checked against strict patterns for the same reason. The roots are
// configurable (Root) so tests run against fake trees.
package sysfs
