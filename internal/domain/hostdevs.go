package domain

import (
	"fmt"
	"strconv"

	"libvirt.org/go/libvirtxml"
)

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
		var err error
		switch {
		case h.SubsysUSB != nil:
			err = p.usb(from, h.SubsysUSB)
		case h.SubsysSCSI != nil:
			err = p.scsi(from, h.SubsysSCSI)
		case h.SubsysSCSIHost != nil:
			// vhost-scsi: virSCSIVHostDeviceFileIterate labels the one
			// shared /dev/vhost-scsi node.
			p.add(Resource{Path: "/dev/vhost-scsi", Kind: KindSCSIHost, From: from})
		case h.SubsysPCI != nil:
			err = p.pci(from, h.SubsysPCI)
		case h.SubsysMDev != nil:
			err = p.mdev(from, h.SubsysMDev)
		case h.CapsStorage != nil || h.CapsMisc != nil:
			err = p.hostdevCaps(from, h)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) scsi(from string, s *libvirtxml.DomainHostdevSubsysSCSI) error {
	if s.Source == nil || s.Source.Host == nil {
		return nil // iSCSI: like a network disk, nothing local
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
	p.add(Resource{Kind: KindSCSI, From: from, SCSI: a,
		ReadOnly: s.ReadOnly != nil, Shared: s.Shareable != nil})
	return nil
}

func (p *parser) pci(from string, s *libvirtxml.DomainHostdevSubsysPCI) error {
	if s.Driver != nil && s.Driver.Name != "" && s.Driver.Name != "vfio" {
		// Legacy KVM/Xen assignment: not supported by the QEMU
		// driver, nothing under /dev/vfio to label.
		return nil
	}
	if s.Source == nil || s.Source.Address == nil {
		return invalidf("%s: PCI hostdev without an address", from)
	}
	addr, err := pciAddr(from+"/address", s.Source.Address)
	if err != nil {
		return err
	}
	p.add(Resource{Kind: KindVFIO, From: from, PCI: addr})
	return nil
}

func (p *parser) mdev(from string, s *libvirtxml.DomainHostdevSubsysMDev) error {
	if s.Source == nil || s.Source.Address == nil || s.Source.Address.UUID == "" {
		return invalidf("%s: mdev hostdev without a uuid", from)
	}
	p.add(Resource{Kind: KindVFIO, From: from, Mdev: s.Source.Address.UUID})
	return nil
}

// hostdevCaps mirrors virSecurityDACSetHostdevCapsLabel: <hostdev
// mode='capabilities'> names the host node itself.
func (p *parser) hostdevCaps(from string, h *libvirtxml.DomainHostdev) error {
	var (
		raw, sub string
		kind     Kind
	)
	switch {
	case h.CapsStorage != nil:
		if h.CapsStorage.Source != nil {
			raw, sub, kind = h.CapsStorage.Source.Block, "/block", KindHostdevBlock
		}
	case h.CapsMisc != nil:
		if h.CapsMisc.Source != nil {
			raw, sub, kind = h.CapsMisc.Source.Char, "/char", KindHostdevChar
		}
	}
	if raw == "" {
		return nil
	}
	r, err := p.pathRes(from+sub, raw, kind)
	if err != nil {
		return err
	}
	p.add(r)
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
	p.add(Resource{Kind: KindUSB, From: from, USB: sel, Optional: isOptional(s.StartUpPolicy)})
	return nil
}
