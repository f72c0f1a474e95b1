package domain

// FileType is the set of inode types a resource may be. The owner package
// refuses to touch an inode of any other type.
type FileType uint8

// File types, combinable with |.
const (
	TypeRegular FileType = 1 << iota
	TypeBlock
	TypeChar
	TypeSocket
	TypeFIFO
	TypeDir
)

// USBSelector names a USB host device the way <hostdev type='usb'> does:
// by bus/device address, or by vendor/product id, or both.
type USBSelector struct {
	Bus, Device     uint   // 0 when the XML gives no <address>
	Vendor, Product uint16 // 0 when the XML gives no <vendor>/<product>
}

// Resource is one host object QEMU will open, as named by the domain XML.
// It is pure data: nothing here has touched the host.
type Resource struct {
	// Path is absolute and clean. It is empty for resources the plan
	// package must find on the host first (USB by vendor/product).
	// For KindChardevPipe it is the base path: like libvirt, the caller
	// takes Path+".in" and Path+".out" when both exist, else Path.
	Path string
	Kind Kind
	// From is the XML element the resource came from, e.g.
	// "disk[target=vda]/source" or "disk[target=vda]/backingStore[1]/source".
	From string
	// Expect lists the inode types this resource may legitimately be.
	Expect FileType
	// Label is a per-resource DAC label ("user:group", "+107:+107", ...)
	// from a <seclabel model='dac'> on the element; empty means the domain's.
	Label string
	// Skip, when non-empty, says why the hook must leave this resource
	// alone (e.g. "seclabel relabel='no'"); it is still listed by plan.
	Skip string
	// ReadOnly is true for <readonly/> disks and backing images.
	ReadOnly bool
	// Shared is true for <shareable/> disks.
	Shared bool
	// Optional is true when a missing resource must not fail prepare
	// (startupPolicy='optional' or 'requisite').
	Optional bool
	// Format is the image format libvirt was told (driver type=, or a
	// backingStore's <format>); empty if unknown.
	Format string
	// ProbeBacking is true when the XML does not spell out the rest of
	// the chain below this image, so image headers must be read. It is
	// false for images whose Format is "raw" (they have no backing file).
	ProbeBacking bool
	// StdioFileOnly is true for a file chardev that libvirt labels only
	// when qemu.conf has stdio_handler = "file": with the default "logd",
	// virtlogd opens the file and hands QEMU a descriptor, so the file
	// keeps its owner. The caller decides from qemu.conf.
	StdioFileOnly bool
	// Host lookups the plan package resolves to a Path (through sysfs or
	// the storage pool definitions). At most one is set, and only when
	// Path is empty.
	USB    *USBSelector // <hostdev type='usb'>
	SCSI   *SCSIAddress // <hostdev type='scsi'> → /dev/sgN
	PCI    string       // <hostdev type='pci'> "0000:06:12.5" → /dev/vfio/<group>
	Mdev   string       // <hostdev type='mdev'> uuid → /dev/vfio/<group>
	Volume *VolumeRef   // <disk type='volume'> → path from the pool definition
}

// SCSIAddress names a SCSI host device as <hostdev type='scsi'> does.
type SCSIAddress struct {
	Adapter     string // "scsi_host0"
	Bus, Target uint
	Unit        uint64
}

// VolumeRef names a storage pool volume.
type VolumeRef struct {
	Pool, Volume string
	Mode         string // <source mode=...> for iscsi pools; "" otherwise
}

// Domain is what the hook needs from a domain XML.
type Domain struct {
	Name string
	UUID string
	// Label is the domain-wide static DAC label, "" if none.
	Label string
	// Relabel is false when the domain's DAC seclabel says relabel='no':
	// then the hook changes nothing for this domain.
	Relabel bool
	// Resources in a fixed order: element kinds in the order libvirt's
	// DAC driver visits them (disks, graphics, inputs, hostdevs, memory
	// devices, chardevs, smartcards, TPMs, launch security, <os>, sysinfo),
	// XML order within a kind.
	Resources []Resource
	// Notes are things the hook cannot handle from this XML alone
	// (e.g. firmware auto-selection), reported by plan and doctor.
	Notes []string
	// Transient lists the target names of <transient/> disks.
	Transient []string `json:",omitempty"`
}
