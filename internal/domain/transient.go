package domain

import "libvirt.org/go/libvirtxml"

// transientDisks lists the targets of disks marked <transient/>: libvirt
// puts a new overlay over each of them after the prepare hook has run,
// so only libvirt's own labelling can give QEMU that file.
func transientDisks(x *libvirtxml.Domain) []string {
	if x.Devices == nil {
		return nil
	}
	var out []string
	for _, d := range x.Devices.Disks {
		if d.Transient == nil {
			continue
		}
		t := "?"
		if d.Target != nil {
			t = d.Target.Dev
		}
		out = append(out, t)
	}
	return out
}
