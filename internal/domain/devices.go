package domain

import (
	"strconv"

	"libvirt.org/go/libvirtxml"
)

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
		r, err := p.pathRes("graphics["+strconv.Itoa(i)+"]/gl", node, KindRenderNode)
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
		r, err := p.pathRes("input["+strconv.Itoa(i)+"]/source", dev, KindEvdev)
		if err != nil {
			return err
		}
		p.add(r)
	}
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
			r, err := p.pathRes(from+"/source/path", m.Source.Path, KindMemory)
			if err != nil {
				return err
			}
			p.add(r)
		case "sgx-epc":
			if sgx {
				continue // the same two host nodes serve every EPC section
			}
			sgx = true
			p.add(Resource{Path: "/dev/sgx_vepc", Kind: KindSGX, From: from})
			p.add(Resource{Path: "/dev/sgx_provision", Kind: KindSGX, From: from})
		}
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
			r, err := p.pathRes("sysinfo/entry["+e.Name+"]", e.File, KindFWCfg)
			if err != nil {
				return err
			}
			p.add(r)
		}
	}
	return nil
}
