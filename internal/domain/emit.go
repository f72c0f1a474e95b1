package domain

import (
	"fmt"
	"strconv"

	"libvirt.org/go/libvirtxml"
)

// What this file mirrors, and what it leaves out.
//
// It follows virSecurityDACSetAllLabel in libvirt's
// src/security/security_dac.c and everything that calls into
// virSecurityDACSetOwnership from there: disks and their backing chains,
// graphics render nodes, inputs, hostdevs, memory devices, chardevs,
// smartcards, TPMs, SEV, <os> kernel/initrd/dtb/ACPI tables/NVRAM and
// fw_cfg files.
//
// Deliberately not emitted, because libvirt's DAC driver does not chown
// them either (QEMU gets a descriptor, the file is libvirt's own, or it
// is another process's business):
//   - <loader>: read-only firmware, opened by QEMU but never relabelled
//     (a writable loader gets a Note);
//   - network, vhost-user, vhost-vdpa and type='dir' disks (libvirt skips
//     dir disks outright: "XXX fixme - we need to recursively label");
//   - disk <reservations> sockets (qemu-pr-helper's, not relabelled);
//   - chardev <log file=...>: virtlogd or libvirt opens it and passes an
//     fd, security_dac.c never labels it;
//   - <redirdev>, <rng> (random and egd backends), <shmem> server sockets,
//     <filesystem>, <interface> vhost-user sockets, <audio>/<sound>:
//     virSecurityDACSetAllLabel does not visit them;
//   - smartcard host-certificates <database>: an NSS database directory
//     (default /etc/pki/nssdb) shared with the host; changing its owner
//     for one guest would be wrong even if a libvirt version did so;
//   - TPM emulator: swtpm's socket and state live in libvirt's own
//     directories and are owned by libvirt's swtpm_user handling;
//   - the TPM passthrough cancel path: libvirt opens it and passes an fd,
//     and the DAC driver only labels the device (SELinux labels both);
//   - memoryBacking / memory_backing_dir files: named by qemu.conf, not
//     by the XML.

// skipRelabelNo is the Skip reason for a per-element relabel='no'.
const skipRelabelNo = "seclabel relabel='no'"

// parser carries one Parse call.
type parser struct {
	x *libvirtxml.Domain
	d Domain
	// serialSrc remembers serial sources so a <console> that merely
	// mirrors serial[0] (libvirt writes it that way) is not listed twice.
	serialSrc map[string]struct{}
}

func (p *parser) run() error {
	x := p.x
	p.d.Name, p.d.UUID = x.Name, x.UUID
	p.domainSeclabel()

	devs := x.Devices
	if devs == nil {
		devs = &libvirtxml.DomainDeviceList{}
	}
	// One allocation for the common case: a disk is usually one image.
	p.d.Resources = make([]Resource, 0, len(devs.Disks)+len(devs.Hostdevs)+
		len(devs.Serials)+len(devs.Consoles)+len(devs.Channels)+8)

	for _, step := range []func(*libvirtxml.DomainDeviceList) error{
		p.disks, p.graphics, p.inputs, p.hostdevs, p.memories,
		p.chardevs, p.smartcards, p.tpms,
	} {
		if err := step(devs); err != nil {
			return err
		}
	}
	if ls := x.LaunchSecurity; ls != nil && (ls.SEV != nil || ls.SEVSNP != nil) {
		// QEMU's sev-guest object opens /dev/sev; libvirt labels it
		// (virSecurityDACSetSEVLabel).
		p.add(Resource{Path: "/dev/sev", Kind: KindSEV, From: "launchSecurity", Expect: TypeChar})
	}
	if err := p.os(); err != nil {
		return err
	}
	return p.sysinfo()
}

func (p *parser) add(r Resource) { p.d.Resources = append(p.d.Resources, r) }

// domainSeclabel mirrors virDomainDefGetSecurityLabelDef(def, "dac"):
// only a seclabel with model='dac' counts, except that a lone
// <seclabel type='none'/> without a model applies to every model
// (libvirt copies it to each security driver when parsing).
func (p *parser) domainSeclabel() {
	p.d.Relabel = true
	var sl *libvirtxml.DomainSecLabel
	for i := range p.x.SecLabel {
		if p.x.SecLabel[i].Model == "dac" {
			sl = &p.x.SecLabel[i]
			break
		}
	}
	if sl == nil && len(p.x.SecLabel) == 1 && p.x.SecLabel[0].Model == "" && p.x.SecLabel[0].Type == "none" {
		sl = &p.x.SecLabel[0]
	}
	if sl == nil {
		return
	}
	// type='none' implies relabel='no' (libvirt refuses relabel='yes'
	// with it). A <label> is taken for static labels and also for
	// dynamic ones: libvirt writes the generated "+uid:+gid" into the
	// live XML, and it is the owner it would use.
	if sl.Relabel == "no" || sl.Type == "none" {
		p.d.Relabel = false
	}
	if sl.Type != "none" {
		p.d.Label = sl.Label
	}
}

// dacLabel returns the per-element seclabel for model 'dac', as
// virStorageSourceGetSecurityLabelDef and
// virDomainChrSourceDefGetSecurityLabelDef do: a seclabel without a model
// does not match.
func dacLabel(ls []libvirtxml.DomainDeviceSecLabel) *libvirtxml.DomainDeviceSecLabel {
	for i := range ls {
		if ls[i].Model == "dac" {
			return &ls[i]
		}
	}
	return nil
}

// decides reports whether a per-element seclabel settles the owner on its
// own: relabel='no' or an explicit <label>.
func decides(sl *libvirtxml.DomainDeviceSecLabel) bool {
	return sl != nil && (sl.Relabel == "no" || sl.Label != "")
}

func applyLabel(r *Resource, sl *libvirtxml.DomainDeviceSecLabel) {
	switch {
	case sl == nil:
	case sl.Relabel == "no":
		r.Skip = skipRelabelNo
	case sl.Label != "":
		r.Label = sl.Label
	}
}

// applyImageLabel mirrors virSecurityDACSetImageLabelInternal: an image's
// own seclabel wins when it decides; otherwise the seclabel of the disk's
// top-level <source> (the "parent") applies, so a relabel='no' or <label>
// on a disk's source covers its whole backing chain unless a backing
// image says otherwise.
func applyImageLabel(r *Resource, own, parent *libvirtxml.DomainDeviceSecLabel) {
	if decides(own) {
		applyLabel(r, own)
	} else if decides(parent) {
		applyLabel(r, parent)
	}
}

func (p *parser) pathRes(from, raw string, kind Kind, expect FileType) (Resource, error) {
	path, err := cleanPath(from, raw)
	if err != nil {
		return Resource{}, err
	}
	return Resource{Path: path, Kind: kind, From: from, Expect: expect}, nil
}

func diskKind(device string) (Kind, bool) {
	switch device {
	case "", "disk":
		return KindDisk, true
	case "cdrom":
		return KindCdrom, true
	case "floppy":
		return KindFloppy, true
	case "lun":
		return KindLun, true
	}
	return "", false
}

func diskName(i int, d *libvirtxml.DomainDisk) string {
	if d.Target != nil && d.Target.Dev != "" {
		return "disk[target=" + d.Target.Dev + "]"
	}
	return "disk[" + strconv.Itoa(i) + "]"
}

// noSource reports whether a <source> names nothing: an empty cdrom, or an
// empty <backingStore/> (the chain terminator).
func noSource(s *libvirtxml.DomainDiskSource) bool {
	switch {
	case s == nil:
		return true
	case s.File != nil:
		return s.File.File == ""
	case s.Block != nil:
		return s.Block.Dev == ""
	case s.Volume != nil:
		return s.Volume.Pool == "" && s.Volume.Volume == ""
	}
	return s.Network == nil && s.Dir == nil && s.NVME == nil &&
		s.VHostUser == nil && s.VHostVDPA == nil && s.Ctl == nil
}

// volumeTypes is what a pool volume may be: the pool decides (a dir pool
// holds files, a logical pool block devices), and the XML does not say.
const volumeTypes = TypeRegular | TypeBlock

// image turns one local storage <source> into a Resource. ok is false for
// sources libvirt does not chown (network, vhost-user, vdpa, dir, ...)
// and for empty ones.
//
// The source type fixes the inode type: type='file' must be a regular
// file and type='block' a block device. QEMU's "file" driver refuses host
// devices anyway, so a file source that resolves to a block device is
// never legitimate; allowing it would let anyone who can write an image
// directory plant "data.raw -> /dev/vda" and be handed the host's disk.
func (p *parser) image(from string, s *libvirtxml.DomainDiskSource, kind Kind) (r Resource, own *libvirtxml.DomainDeviceSecLabel, ok bool, err error) {
	switch {
	case s == nil:
		return r, nil, false, nil
	case s.File != nil && s.File.File != "":
		r, err = p.pathRes(from, s.File.File, kind, TypeRegular)
		return r, dacLabel(s.File.SecLabel), err == nil, err
	case s.Block != nil && s.Block.Dev != "":
		r, err = p.pathRes(from, s.Block.Dev, kind, TypeBlock)
		return r, dacLabel(s.Block.SecLabel), err == nil, err
	case s.Volume != nil && s.Volume.Pool != "" && s.Volume.Volume != "":
		// The pool decides the path (and whether it is a file or a
		// block device); the probe package resolves it.
		r = Resource{Kind: kind, From: from, Expect: volumeTypes,
			Volume: &VolumeRef{Pool: s.Volume.Pool, Volume: s.Volume.Volume, Mode: s.Volume.Mode}}
		return r, dacLabel(s.Volume.SecLabel), true, nil
	}
	return r, nil, false, nil
}

func isOptional(startupPolicy string) bool {
	return startupPolicy == "optional" || startupPolicy == "requisite"
}

func (p *parser) disks(devs *libvirtxml.DomainDeviceList) error {
	for i := range devs.Disks {
		if err := p.disk(i, &devs.Disks[i]); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) disk(i int, d *libvirtxml.DomainDisk) error {
	kind, ok := diskKind(d.Device)
	name := diskName(i, d)
	if !ok {
		return invalidf("%s: unknown disk device %q", name, d.Device)
	}
	src := d.Source
	if noSource(src) || src.Dir != nil {
		// Empty cdrom/floppy: nothing to open. type='dir': libvirt
		// skips it and its chain in virSecurityDACSetAllLabel.
		return nil
	}
	from := name + "/source"
	if src.NVME != nil {
		return p.nvmeDisk(from, src.NVME)
	}
	optional := isOptional(src.StartupPolicy)
	format := ""
	if d.Driver != nil {
		format = d.Driver.Type
	}

	// deepest is the index of the last emitted image of the chain, or -1
	// when the deepest element named by the XML cannot be probed
	// (network) or was not emitted.
	deepest, deepestFormat := -1, ""
	top, topLabel, ok, err := p.image(from, src, kind)
	if err != nil {
		return err
	}
	if ok {
		top.ReadOnly = d.ReadOnly != nil || kind == KindCdrom // libvirt forces cdroms read-only
		top.Shared = d.Shareable != nil
		top.Optional = optional
		top.Format = format
		applyLabel(&top, topLabel)
		p.add(top)
		deepest, deepestFormat = len(p.d.Resources)-1, format
	}

	// An external qcow2 data file (newer libvirt) is opened with the
	// image and labelled like it.
	if ds := src.DataStore; ds != nil && !noSource(ds.Source) {
		r, own, ok, err := p.image(from+"/dataStore/source", ds.Source, KindDataFile)
		if err != nil {
			return err
		}
		if ok {
			r.ReadOnly = top.ReadOnly
			r.Shared = top.Shared
			r.Optional = optional
			if ds.Format != nil {
				r.Format = ds.Format.Type
			}
			applyImageLabel(&r, own, topLabel)
			p.add(r)
		}
	}

	// The backing chain as the XML spells it. libvirt labels every
	// element (virSecurityDACSetImageLabelRelative walks
	// src->backingStore), each backing image read-only.
	terminated := false
	depth := 1
	for bs := d.BackingStore; bs != nil; bs = bs.BackingStore {
		if noSource(bs.Source) {
			terminated = true // <backingStore/>: no backing file, do not probe
			break
		}
		bfrom := name + "/backingStore[" + strconv.Itoa(depth) + "]/source"
		depth++
		r, own, ok, err := p.image(bfrom, bs.Source, KindBacking)
		if err != nil {
			return err
		}
		if !ok {
			deepest = -1 // e.g. a network image: nothing below it can be probed from here
			continue
		}
		r.ReadOnly = true
		r.Optional = optional
		if bs.Format != nil {
			r.Format = bs.Format.Type
		}
		applyImageLabel(&r, own, topLabel)
		p.add(r)
		deepest, deepestFormat = len(p.d.Resources)-1, r.Format
	}
	// A raw image has no backing file, so there is nothing to probe.
	if !terminated && deepest >= 0 && deepestFormat != "raw" {
		p.d.Resources[deepest].ProbeBacking = true
	}
	return nil
}

// nvmeDisk: libvirt hands QEMU the NVMe controller through VFIO and
// labels its IOMMU group device (virSecurityDACSetImageLabelInternal).
func (p *parser) nvmeDisk(from string, n *libvirtxml.DomainDiskSourceNVME) error {
	if n.PCI == nil || n.PCI.Address == nil {
		return invalidf("%s: NVMe disk without a PCI address", from)
	}
	addr, err := pciAddr(from+"/address", n.PCI.Address)
	if err != nil {
		return err
	}
	p.add(Resource{Kind: KindVFIO, From: from, Expect: TypeChar, PCI: addr})
	return nil
}

func pciAddr(from string, a *libvirtxml.DomainAddressPCI) (string, error) {
	if a.Bus == nil || a.Slot == nil || a.Function == nil {
		return "", invalidf("%s: incomplete PCI address", from)
	}
	dom := uint(0)
	if a.Domain != nil {
		dom = *a.Domain
	}
	if dom > 0xffff || *a.Bus > 0xff || *a.Slot > 0x1f || *a.Function > 7 {
		return "", invalidf("%s: PCI address out of range", from)
	}
	return fmt.Sprintf("%04x:%02x:%02x.%x", dom, *a.Bus, *a.Slot, *a.Function), nil
}

// graphics: a GL render node is shared by every guest and host user of
// the GPU. libvirt chowns it only inside the domain's private /dev
// (virSecurityDACSetGraphicsLabel returns early without a mount
// namespace); a hook works on the host's /dev, so it is listed and skipped.
func (p *parser) graphics(devs *libvirtxml.DomainDeviceList) error {
	for i := range devs.Graphics {
		g := &devs.Graphics[i]
		var node string
		switch {
		case g.Spice != nil && g.Spice.GL != nil:
			node = g.Spice.GL.RenderNode
		case g.EGLHeadless != nil && g.EGLHeadless.GL != nil:
			node = g.EGLHeadless.GL.RenderNode
		case g.DBus != nil && g.DBus.GL != nil:
			node = g.DBus.GL.RenderNode
		}
		if node == "" {
			continue
		}
		r, err := p.pathRes("graphics["+strconv.Itoa(i)+"]/gl", node, KindRenderNode, TypeChar)
		if err != nil {
			return err
		}
		r.Skip = "shared DRM render node: libvirt relabels it only inside the domain's private /dev"
		p.add(r)
	}
	return nil
}

// inputs: virSecurityDACSetInputLabel labels the event device of
// type='passthrough' (virtio-input-host) and type='evdev'.
func (p *parser) inputs(devs *libvirtxml.DomainDeviceList) error {
	for i := range devs.Inputs {
		s := devs.Inputs[i].Source
		if s == nil {
			continue
		}
		var dev string
		switch {
		case s.EVDev != nil:
			dev = s.EVDev.Dev
		case s.Passthrough != nil:
			dev = s.Passthrough.EVDev
		}
		if dev == "" {
			continue
		}
		r, err := p.pathRes("input["+strconv.Itoa(i)+"]/source", dev, KindEvdev, TypeChar)
		if err != nil {
			return err
		}
		p.add(r)
	}
	return nil
}

// parseID reads a USB vendor/product id the way libvirt does
// (virStrToLong_ui with base 0: "0x1234", decimal or octal).
func parseID(from, s string) (uint16, error) {
	v, err := strconv.ParseUint(s, 0, 16)
	if err != nil {
		return 0, invalidf("%s: bad USB id %q", from, s)
	}
	return uint16(v), nil
}

// hostdevs mirrors virSecurityDACSetHostdevLabel and
// virSecurityDACSetHostdevCapsLabel. Only the selector is emitted for
// subsystem devices: sysfs decides the device node. A hostdev has no
// seclabel of its own; only the domain's relabel='no' stops libvirt.
func (p *parser) hostdevs(devs *libvirtxml.DomainDeviceList) error {
	for i := range devs.Hostdevs {
		h := &devs.Hostdevs[i]
		from := "hostdev[" + strconv.Itoa(i) + "]/source"
		switch {
		case h.SubsysUSB != nil:
			if err := p.usb(from, h.SubsysUSB); err != nil {
				return err
			}
		case h.SubsysSCSI != nil:
			s := h.SubsysSCSI
			if s.Source == nil || s.Source.Host == nil {
				continue // iSCSI: like a network disk, nothing local
			}
			host := s.Source.Host
			if host.Adapter == nil || host.Adapter.Name == "" || host.Address == nil {
				return invalidf("%s: SCSI hostdev without adapter or address", from)
			}
			a := &SCSIAddress{Adapter: host.Adapter.Name}
			if host.Address.Bus != nil {
				a.Bus = *host.Address.Bus
			}
			if host.Address.Target != nil {
				a.Target = *host.Address.Target
			}
			if host.Address.Unit != nil {
				a.Unit = uint64(*host.Address.Unit)
			}
			p.add(Resource{Kind: KindSCSI, From: from, Expect: TypeChar, SCSI: a,
				ReadOnly: s.ReadOnly != nil, Shared: s.Shareable != nil})
		case h.SubsysSCSIHost != nil:
			// vhost-scsi: virSCSIVHostDeviceFileIterate labels the one
			// shared /dev/vhost-scsi node.
			p.add(Resource{Path: "/dev/vhost-scsi", Kind: KindSCSIHost, From: from, Expect: TypeChar})
		case h.SubsysPCI != nil:
			s := h.SubsysPCI
			if s.Driver != nil && s.Driver.Name != "" && s.Driver.Name != "vfio" {
				// Legacy KVM/Xen assignment: not supported by the QEMU
				// driver any more, nothing under /dev/vfio to label.
				continue
			}
			if s.Source == nil || s.Source.Address == nil {
				return invalidf("%s: PCI hostdev without an address", from)
			}
			addr, err := pciAddr(from+"/address", s.Source.Address)
			if err != nil {
				return err
			}
			p.add(Resource{Kind: KindVFIO, From: from, Expect: TypeChar, PCI: addr})
		case h.SubsysMDev != nil:
			s := h.SubsysMDev
			if s.Source == nil || s.Source.Address == nil || s.Source.Address.UUID == "" {
				return invalidf("%s: mdev hostdev without a uuid", from)
			}
			p.add(Resource{Kind: KindVFIO, From: from, Expect: TypeChar, Mdev: s.Source.Address.UUID})
		case h.CapsStorage != nil:
			if h.CapsStorage.Source == nil || h.CapsStorage.Source.Block == "" {
				continue
			}
			r, err := p.pathRes(from+"/block", h.CapsStorage.Source.Block, KindHostdevBlock, TypeBlock)
			if err != nil {
				return err
			}
			p.add(r)
		case h.CapsMisc != nil:
			if h.CapsMisc.Source == nil || h.CapsMisc.Source.Char == "" {
				continue
			}
			r, err := p.pathRes(from+"/char", h.CapsMisc.Source.Char, KindHostdevChar, TypeChar)
			if err != nil {
				return err
			}
			p.add(r)
		}
	}
	return nil
}

func (p *parser) usb(from string, u *libvirtxml.DomainHostdevSubsysUSB) error {
	s := u.Source
	if s == nil {
		return invalidf("%s: USB hostdev without a source", from)
	}
	sel := &USBSelector{}
	var err error
	if s.Vendor != nil && s.Vendor.ID != "" {
		if sel.Vendor, err = parseID(from+"/vendor", s.Vendor.ID); err != nil {
			return err
		}
	}
	if s.Product != nil && s.Product.ID != "" {
		if sel.Product, err = parseID(from+"/product", s.Product.ID); err != nil {
			return err
		}
	}
	if s.Address != nil {
		if s.Address.Bus != nil {
			sel.Bus = *s.Address.Bus
		}
		if s.Address.Device != nil {
			sel.Device = *s.Address.Device
		}
	}
	if sel.Vendor == 0 && (sel.Bus == 0 || sel.Device == 0) {
		return invalidf("%s: USB hostdev needs a vendor id or a bus and device address", from)
	}
	p.add(Resource{Kind: KindUSB, From: from, Expect: TypeChar, USB: sel, Optional: isOptional(s.StartUpPolicy)})
	return nil
}

// memories mirrors virSecurityDACSetMemoryLabel.
func (p *parser) memories(devs *libvirtxml.DomainDeviceList) error {
	sgx := false
	for i := range devs.Memorydevs {
		m := &devs.Memorydevs[i]
		from := "memory[" + strconv.Itoa(i) + "]"
		switch m.Model {
		case "nvdimm", "virtio-pmem":
			if m.Source == nil || m.Source.Path == "" {
				continue
			}
			// A file, or a device-DAX char device / pmem block device.
			r, err := p.pathRes(from+"/source/path", m.Source.Path, KindMemory, TypeRegular|TypeChar|TypeBlock)
			if err != nil {
				return err
			}
			p.add(r)
		case "sgx-epc":
			if sgx {
				continue // the same two host nodes serve every EPC section
			}
			sgx = true
			p.add(Resource{Path: "/dev/sgx_vepc", Kind: KindSGX, From: from, Expect: TypeChar})
			p.add(Resource{Path: "/dev/sgx_provision", Kind: KindSGX, From: from, Expect: TypeChar})
		}
	}
	return nil
}

// chardev mirrors virSecurityDACSetChardevLabelHelper for one chardev
// <source>. stdioLogd is libvirt's chardevStdioLogd argument: true for
// the devices virDomainChrDefForeach and the smartcard walk visit, false
// for TPM backends.
func (p *parser) chardev(from string, src *libvirtxml.DomainChardevSource, stdioLogd bool) (Resource, bool, error) {
	if src == nil {
		return Resource{}, false, nil
	}
	var (
		raw    string
		kind   Kind
		expect FileType
		labels []libvirtxml.DomainDeviceSecLabel
		bind   bool
	)
	switch {
	case src.File != nil:
		raw, kind, expect, labels = src.File.Path, KindChardevFile, TypeRegular, src.File.SecLabel
	case src.Dev != nil:
		raw, kind, expect, labels = src.Dev.Path, KindChardevDev, TypeChar, src.Dev.SecLabel
	case src.Pipe != nil:
		raw, kind, expect, labels = src.Pipe.Path, KindChardevPipe, TypeFIFO, src.Pipe.SecLabel
	case src.UNIX != nil:
		raw, kind, expect, labels = src.UNIX.Path, KindChardevSocket, TypeSocket, src.UNIX.SecLabel
		bind = src.UNIX.Mode == "bind"
	default:
		return Resource{}, false, nil // pty, tcp, udp, spice...: no host file
	}
	if raw == "" {
		return Resource{}, false, nil // libvirt generates the path (e.g. guest agent channel)
	}
	r, err := p.pathRes(from, raw, kind, expect)
	if err != nil {
		return Resource{}, false, err
	}
	sl := dacLabel(labels)
	applyLabel(&r, sl)
	switch {
	case kind == KindChardevFile:
		// libvirt pre-creates a missing file chardev as root
		// (qemuProcessPrepareChardevDevice), after the prepare hook.
		r.Optional = true
		r.StdioFileOnly = sl == nil && stdioLogd
	case bind:
		// A listening socket is created at start (by libvirt, which
		// passes QEMU the fd, or by QEMU); libvirt labels one that
		// already exists only because it made it itself.
		r.Optional = true
		if r.Skip == "" {
			r.Skip = "unix socket mode='bind': created when the domain starts"
		}
	}
	return r, true, nil
}

func (p *parser) chardevs(devs *libvirtxml.DomainDeviceList) error {
	// virDomainChrDefForeach order: serials, parallels, channels, consoles.
	for i := range devs.Serials {
		r, ok, err := p.chardev("serial["+strconv.Itoa(i)+"]/source", devs.Serials[i].Source, true)
		if err != nil {
			return err
		}
		if ok {
			if p.serialSrc == nil {
				p.serialSrc = make(map[string]struct{}, len(devs.Serials))
			}
			p.serialSrc[string(r.Kind)+"\x00"+r.Path] = struct{}{}
			p.add(r)
		}
	}
	for i := range devs.Parallels {
		if err := p.addChardev("parallel["+strconv.Itoa(i)+"]/source", devs.Parallels[i].Source); err != nil {
			return err
		}
	}
	for i := range devs.Channels {
		if err := p.addChardev("channel["+strconv.Itoa(i)+"]/source", devs.Channels[i].Source); err != nil {
			return err
		}
	}
	for i := range devs.Consoles {
		r, ok, err := p.chardev("console["+strconv.Itoa(i)+"]/source", devs.Consoles[i].Source, true)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		// libvirt writes console[0] of a serial console as a copy of
		// serial[0]'s source: the same file, opened once.
		if _, dup := p.serialSrc[string(r.Kind)+"\x00"+r.Path]; dup {
			continue
		}
		p.add(r)
	}
	return nil
}

func (p *parser) addChardev(from string, src *libvirtxml.DomainChardevSource) error {
	r, ok, err := p.chardev(from, src, true)
	if ok {
		p.add(r)
	}
	return err
}

// smartcards: a passthrough smartcard is a chardev to libvirt.
func (p *parser) smartcards(devs *libvirtxml.DomainDeviceList) error {
	for i := range devs.Smartcards {
		if err := p.addChardev("smartcard["+strconv.Itoa(i)+"]/source", devs.Smartcards[i].Passthrough); err != nil {
			return err
		}
	}
	return nil
}

// tpms mirrors virSecurityDACSetTPMFileLabel: the passthrough device and
// an external swtpm's socket, as chardevs with chardevStdioLogd false.
func (p *parser) tpms(devs *libvirtxml.DomainDeviceList) error {
	for i := range devs.TPMs {
		b := devs.TPMs[i].Backend
		if b == nil {
			continue
		}
		from := "tpm[" + strconv.Itoa(i) + "]/backend"
		switch {
		case b.Passthrough != nil && b.Passthrough.Device != nil && b.Passthrough.Device.Path != "":
			r, err := p.pathRes(from+"/device", b.Passthrough.Device.Path, KindTPM, TypeChar)
			if err != nil {
				return err
			}
			p.add(r)
		case b.External != nil && b.External.Source != nil:
			r, ok, err := p.chardev(from+"/source", (*libvirtxml.DomainChardevSource)(b.External.Source), false)
			if err != nil {
				return err
			}
			if ok {
				p.add(r)
			}
		}
	}
	return nil
}

// os mirrors the tail of virSecurityDACSetAllLabel: NVRAM (an image
// source since libvirt 8.5), kernel, initrd, dtb and ACPI tables, all
// with the domain's image label.
func (p *parser) os() error {
	o := p.x.OS
	if o == nil {
		return nil
	}
	if err := p.nvram(o); err != nil {
		return err
	}
	for _, f := range []struct {
		from, path string
		kind       Kind
	}{
		{"os/kernel", o.Kernel, KindKernel},
		{"os/initrd", o.Initrd, KindInitrd},
		{"os/dtb", o.DTB, KindDTB},
	} {
		if f.path == "" {
			continue
		}
		r, err := p.pathRes(f.from, f.path, f.kind, TypeRegular)
		if err != nil {
			return err
		}
		p.add(r)
	}
	if o.ACPI != nil {
		for i, t := range o.ACPI.Tables {
			if t.Path == "" {
				continue
			}
			r, err := p.pathRes("os/acpi/table["+strconv.Itoa(i)+"]", t.Path, KindACPITable, TypeRegular)
			if err != nil {
				return err
			}
			p.add(r)
		}
	}
	if l := o.Loader; l != nil && l.Path != "" && l.Readonly == "no" {
		p.d.Notes = append(p.d.Notes, fmt.Sprintf(
			"os/loader: %q is writable (readonly='no') but libvirt never relabels a loader; QEMU needs write access to it", l.Path))
	}
	return nil
}

func (p *parser) nvram(o *libvirtxml.DomainOS) error {
	loaderPath := o.Loader != nil && o.Loader.Path != ""
	nv := o.NVRam
	named := false
	if nv != nil {
		if nv.Source != nil {
			// <nvram type='file'|'block'><source .../></nvram>
			r, own, ok, err := p.image("os/nvram/source", nv.Source, KindNVRAM)
			if err != nil {
				return err
			}
			if ok {
				named = true
				if nv.Source.Block != nil {
					r.Expect = TypeBlock
				} else {
					r.Expect = TypeRegular
				}
				r.Format = nv.Format
				r.Optional = true
				applyLabel(&r, own)
				p.add(r)
			} else if !noSource(nv.Source) {
				named = true // network NVRAM: nothing local
			}
		} else if nv.NVRam != "" {
			r, err := p.pathRes("os/nvram", nv.NVRam, KindNVRAM, TypeRegular)
			if err != nil {
				return err
			}
			// libvirt creates a missing NVRAM from its template, owned
			// by the QEMU user, after the prepare hook has run.
			r.Optional = true
			r.Format = nv.Format
			p.add(r)
			named = true
		}
	}
	if vs := o.VarStore; vs != nil && vs.Path != "" {
		r, err := p.pathRes("os/varstore", vs.Path, KindNVRAM, TypeRegular)
		if err != nil {
			return err
		}
		r.Optional = true
		p.add(r)
		named = true
	}
	switch {
	case o.Firmware != "" && !loaderPath:
		p.d.Notes = append(p.d.Notes, fmt.Sprintf(
			"os firmware=%q: libvirt picks the loader and NVRAM template (and the NVRAM path if none is given) after this XML; those paths cannot be listed here", o.Firmware))
	case !named && o.Loader != nil && o.Loader.Type == "pflash" && o.Loader.Stateless != "yes" && o.Loader.Readonly == "yes":
		p.d.Notes = append(p.d.Notes,
			"os/nvram: no path given; libvirt generates one in its nvram directory and creates it from a template owned by the QEMU user; it cannot be listed here")
	}
	return nil
}

// sysinfo mirrors virSecurityDACSetSysinfoLabel: fw_cfg blobs from files.
func (p *parser) sysinfo() error {
	for i := range p.x.SysInfo {
		fw := p.x.SysInfo[i].FWCfg
		if fw == nil {
			continue
		}
		for _, e := range fw.Entry {
			if e.File == "" {
				continue
			}
			r, err := p.pathRes("sysinfo/entry["+e.Name+"]", e.File, KindFWCfg, TypeRegular)
			if err != nil {
				return err
			}
			p.add(r)
		}
	}
	return nil
}
