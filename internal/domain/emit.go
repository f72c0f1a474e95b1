package domain

import "libvirt.org/go/libvirtxml"

// What Parse mirrors, and what it leaves out. The walk over the devices
// is here; each element kind has its own file (disks.go, hostdevs.go,
// chardevs.go, os.go, devices.go for the rest, seclabels.go for the DAC
// labels they share).
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
		p.add(Resource{Path: "/dev/sev", Kind: KindSEV, From: "launchSecurity"})
	}
	if err := p.os(); err != nil {
		return err
	}
	return p.sysinfo()
}

// add appends r. A resource whose element says nothing more specific
// (Expect unset) may be any inode type its kind allows.
func (p *parser) add(r Resource) {
	if r.Expect == 0 {
		r.Expect = r.Kind.Types()
	}
	p.d.Resources = append(p.d.Resources, r)
}

// pathRes is the resource of kind at the path raw, expecting any inode
// type the kind allows; callers narrow Expect where the element says more
// (a type='file' source is a regular file).
func (p *parser) pathRes(from, raw string, kind Kind) (Resource, error) {
	path, err := cleanPath(from, raw)
	if err != nil {
		return Resource{}, err
	}
	return Resource{Path: path, Kind: kind, From: from, Expect: kind.Types()}, nil
}

func isOptional(startupPolicy string) bool {
	return startupPolicy == "optional" || startupPolicy == "requisite"
}
