package domain

import (
	"strconv"

	"libvirt.org/go/libvirtxml"
)

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
		labels []libvirtxml.DomainDeviceSecLabel
		bind   bool
	)
	switch {
	case src.File != nil:
		raw, kind, labels = src.File.Path, KindChardevFile, src.File.SecLabel
	case src.Dev != nil:
		raw, kind, labels = src.Dev.Path, KindChardevDev, src.Dev.SecLabel
	case src.Pipe != nil:
		raw, kind, labels = src.Pipe.Path, KindChardevPipe, src.Pipe.SecLabel
	case src.UNIX != nil:
		raw, kind, labels = src.UNIX.Path, KindChardevSocket, src.UNIX.SecLabel
		bind = src.UNIX.Mode == "bind"
	default:
		return Resource{}, false, nil // pty, tcp, udp, spice...: no host file
	}
	if raw == "" {
		return Resource{}, false, nil // libvirt generates the path (e.g. guest agent channel)
	}
	r, err := p.pathRes(from, raw, kind)
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
			r, err := p.pathRes(from+"/device", b.Passthrough.Device.Path, KindTPM)
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
