package domain

import (
	"fmt"
	"strconv"

	"libvirt.org/go/libvirtxml"
)

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
		r, err := p.pathRes(f.from, f.path, f.kind)
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
			r, err := p.pathRes("os/acpi/table["+strconv.Itoa(i)+"]", t.Path, KindACPITable)
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
			r, err := p.pathRes("os/nvram", nv.NVRam, KindNVRAM)
			if err != nil {
				return err
			}
			r.Expect = TypeRegular
			// libvirt creates a missing NVRAM from its template, owned
			// by the QEMU user, after the prepare hook has run.
			r.Optional = true
			r.Format = nv.Format
			p.add(r)
			named = true
		}
	}
	if vs := o.VarStore; vs != nil && vs.Path != "" {
		r, err := p.pathRes("os/varstore", vs.Path, KindNVRAM)
		if err != nil {
			return err
		}
		r.Expect = TypeRegular
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
