package domain

// Kind says what a resource is to QEMU. Everything the hook knows about a
// kind, beyond its name, is its row in the kinds table below: which inode
// types it may be and how the host side must treat it. A new kind of
// resource is one constant and one row here; the table test fails until
// both exist.
type Kind string

// Resource kinds. Keep the strings stable: they appear in `plan --json`,
// in the journal and in golden files.
const (
	KindDisk          Kind = "disk"            // <disk device='disk'> source
	KindCdrom         Kind = "cdrom"           // <disk device='cdrom'> source
	KindFloppy        Kind = "floppy"          // <disk device='floppy'> source
	KindLun           Kind = "lun"             // <disk device='lun'> source
	KindBacking       Kind = "backing"         // an image in a disk's backing chain
	KindDataFile      Kind = "data-file"       // <source><dataStore> of a qcow2 disk (external data file)
	KindExtent        Kind = "extent"          // an extent file a VMDK descriptor names
	KindUSB           Kind = "usb"             // <hostdev type='usb'> device node
	KindKernel        Kind = "kernel"          // <os><kernel>
	KindInitrd        Kind = "initrd"          // <os><initrd>
	KindDTB           Kind = "dtb"             // <os><dtb>
	KindACPITable     Kind = "acpi-table"      // <os><acpi><table>
	KindNVRAM         Kind = "nvram"           // <os><nvram> (UEFI variable store)
	KindFWCfg         Kind = "fwcfg"           // <sysinfo type='fwcfg'><entry file=...>
	KindChardevFile   Kind = "chardev-file"    // chardev <source> of type='file'
	KindChardevDev    Kind = "chardev-dev"     // chardev <source> of type='dev' (a tty)
	KindChardevPipe   Kind = "chardev-pipe"    // chardev <source> of type='pipe'; see Resource.Path
	KindChardevSocket Kind = "chardev-socket"  // chardev <source> of type='unix'
	KindTPM           Kind = "tpm"             // <tpm><backend type='passthrough'><device path=...>
	KindEvdev         Kind = "evdev"           // <input type='evdev'|'passthrough'> event device
	KindMemory        Kind = "memory"          // <memory model='nvdimm'|'virtio-pmem'> backing file
	KindSCSI          Kind = "scsi"            // <hostdev type='scsi'> → /dev/sgN
	KindSCSIHost      Kind = "scsi-host"       // <hostdev type='scsi_host'> → /dev/vhost-scsi
	KindVFIO          Kind = "vfio"            // PCI or mdev hostdev, NVMe disk → /dev/vfio/<group>
	KindHostdevBlock  Kind = "hostdev-storage" // <hostdev mode='capabilities' type='storage'>
	KindHostdevChar   Kind = "hostdev-misc"    // <hostdev mode='capabilities' type='misc'>
	KindSEV           Kind = "sev"             // <launchSecurity type='sev'> → /dev/sev
	KindSGX           Kind = "sgx"             // <memory model='sgx-epc'> → /dev/sgx_vepc, /dev/sgx_provision
	KindRenderNode    Kind = "rendernode"      // <graphics><gl rendernode=...>; always Skip (shared)
	KindParentDir     Kind = "parent-dir"      // a directory on the way to a resource that gets a search grant
)

// kindFacts is what the hook knows about one kind.
type kindFacts struct {
	// types are the inode types a resource of this kind may be; a
	// Resource's Expect narrows them by what its element says (a
	// type='file' disk source must be a regular file).
	types FileType
	// headerNamesFiles: an image whose header may name other files
	// (backing file, external data file, VMDK extents).
	headerNamesFiles bool
	// misc: legitimately a character device of the misc major (10).
	misc bool
	// pipePair: QEMU opens Path+".in" and Path+".out" when both exist.
	pipePair bool
	// forcedReadOnly: libvirt gives QEMU every resource of this kind
	// read-only, whatever the XML says.
	forcedReadOnly bool
	// bootLoaded: QEMU reads it once to load the guest and never writes it.
	bootLoaded bool
}

// images are the types of a disk-like source: type='file' or a pool
// volume's file, type='block' or a pool volume's block device.
const images = TypeRegular | TypeBlock

var kinds = map[Kind]kindFacts{
	KindDisk:          {types: images, headerNamesFiles: true},
	KindCdrom:         {types: images, headerNamesFiles: true, forcedReadOnly: true},
	KindFloppy:        {types: images, headerNamesFiles: true},
	KindLun:           {types: images, headerNamesFiles: true},
	KindBacking:       {types: images, headerNamesFiles: true, forcedReadOnly: true},
	KindDataFile:      {types: images},
	KindExtent:        {types: TypeRegular},
	KindUSB:           {types: TypeChar},
	KindKernel:        {types: TypeRegular, bootLoaded: true},
	KindInitrd:        {types: TypeRegular, bootLoaded: true},
	KindDTB:           {types: TypeRegular},
	KindACPITable:     {types: TypeRegular},
	KindNVRAM:         {types: images},
	KindFWCfg:         {types: TypeRegular},
	KindChardevFile:   {types: TypeRegular},
	KindChardevDev:    {types: TypeChar},
	KindChardevPipe:   {types: TypeFIFO, pipePair: true},
	KindChardevSocket: {types: TypeSocket},
	KindTPM:           {types: TypeChar},
	KindEvdev:         {types: TypeChar},
	KindMemory:        {types: TypeRegular | TypeChar | TypeBlock}, // a file, device-DAX or pmem
	KindSCSI:          {types: TypeChar},
	KindSCSIHost:      {types: TypeChar, misc: true}, // /dev/vhost-scsi
	KindVFIO:          {types: TypeChar},
	KindHostdevBlock:  {types: TypeBlock},
	KindHostdevChar:   {types: TypeChar, misc: true},
	KindSEV:           {types: TypeChar, misc: true}, // /dev/sev
	KindSGX:           {types: TypeChar, misc: true}, // /dev/sgx_vepc, /dev/sgx_provision
	KindRenderNode:    {types: TypeChar},
	KindParentDir:     {types: TypeDir},
}

// Types returns the inode types a resource of kind k may ever be; 0 for
// an unknown kind.
func (k Kind) Types() FileType { return kinds[k].types }

// HeaderNamesFiles reports whether a resource of kind k is an image whose
// header may name other files (backing file, data file, extents), so the
// directory it lies in may hold files the hook must follow.
func (k Kind) HeaderNamesFiles() bool { return kinds[k].headerNamesFiles }

// MiscDevice reports whether a resource of kind k may legitimately be a
// character device of the misc major (10), such as /dev/vhost-scsi or
// /dev/sev. No other kind may be one: /dev/kvm, /dev/fuse and /dev/uinput
// are misc devices too.
func (k Kind) MiscDevice() bool { return kinds[k].misc }

// PipePair reports whether QEMU opens a resource of kind k as the pair
// Path+".in" and Path+".out" when both exist, and as Path otherwise.
func (k Kind) PipePair() bool { return kinds[k].pipePair }

// ForcedReadOnly reports whether libvirt gives QEMU every resource of
// kind k read-only, whatever the XML says (backing images, cdroms).
func (k Kind) ForcedReadOnly() bool { return kinds[k].forcedReadOnly }

// BootLoaded reports whether QEMU only reads a resource of kind k once,
// to load the guest (kernel, initrd), so it never needs to write it.
func (k Kind) BootLoaded() bool { return kinds[k].bootLoaded }
