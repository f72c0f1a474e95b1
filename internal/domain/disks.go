package domain

import (
	"strconv"

	"libvirt.org/go/libvirtxml"
)

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
		r, err = p.pathRes(from, s.File.File, kind)
		r.Expect = TypeRegular
		return r, dacLabel(s.File.SecLabel), err == nil, err
	case s.Block != nil && s.Block.Dev != "":
		r, err = p.pathRes(from, s.Block.Dev, kind)
		r.Expect = TypeBlock
		return r, dacLabel(s.Block.SecLabel), err == nil, err
	case s.Volume != nil && s.Volume.Pool != "" && s.Volume.Volume != "":
		// The pool decides the path and whether it is a file or a
		// block device (a dir pool holds files, a logical pool block
		// devices); the plan package resolves it from the pool.
		r = Resource{Kind: kind, From: from, Expect: TypeRegular | TypeBlock,
			Volume: &VolumeRef{Pool: s.Volume.Pool, Volume: s.Volume.Volume, Mode: s.Volume.Mode}}
		return r, dacLabel(s.Volume.SecLabel), true, nil
	}
	return r, nil, false, nil
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
	p.add(Resource{Kind: KindVFIO, From: from, PCI: addr})
	return nil
}
