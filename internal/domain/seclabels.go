package domain

import (
	"libvirt.org/go/libvirtxml"
)

// skipRelabelNo is the Skip reason for a per-element relabel='no'.
const skipRelabelNo = "seclabel relabel='no'"

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
