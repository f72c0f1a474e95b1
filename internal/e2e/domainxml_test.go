//go:build e2e

package e2e

// The one domain-XML builder every scenario uses: a domainSpec describes
// the domain (OS boot, disks, serial ports, memory devices) and xml()
// renders it. Empty fields leave their element out, so each scenario says
// only what it needs. Every domain is TCG ('qemu') without graphics: QEMU
// only has to open its host files, which is what the hook must make
// possible.

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// domainSpec is one test domain.
type domainSpec struct {
	Name      string
	MemoryMiB int    // 64 when zero
	Seclabel  string // raw domain-level <seclabel> element, if any
	OS        osSpec
	// FwCfg is a file passed to the guest as a fw_cfg blob (<sysinfo>).
	FwCfg string
	// NVDIMM is the backing file of a 4 MiB nvdimm memory device (which
	// brings <maxMemory> and a NUMA cell with it).
	NVDIMM string
	// SCSI adds a virtio-scsi controller, so SCSI disks can be hot-plugged
	// and unplugged without a guest OS.
	SCSI  bool
	Disks []disk
	// Serials are the serial ports; none gives the domain one pty port.
	Serials []serial
}

// osSpec is the <os> element; Loader also switches ACPI on (UEFI needs it).
type osSpec struct {
	Loader  string // read-only pflash code
	NVRAM   string
	Kernel  string
	Initrd  string
	Cmdline string
	SLIC    string // an ACPI SLIC table file
}

// disk is one <disk>.
type disk struct {
	Type   string // file (default), block or volume
	Device string // disk (default) or cdrom
	Format string // raw or qcow2
	// Source is the file or device; empty (with Type file) is an empty
	// drive, e.g. a cdrom without media.
	Source       string
	Pool, Volume string // Type volume
	Target       string
	Bus          string // virtio when empty
	Cache        string
	ReadOnly     bool
	Shareable    bool
	Transient    bool // <transient/>: QEMU writes to a throw-away overlay
	NoRelabel    bool // <seclabel model='dac' relabel='no'/> inside <source>
}

// serial is one <serial>: unix (connect), pipe or file.
type serial struct {
	Type   string
	Path   string
	Append bool // file: append='on'
}

func fileDisk(format, path, target string) disk {
	return disk{Type: "file", Device: "disk", Format: format, Source: path, Target: target, Bus: "virtio"}
}

// attr escapes s for a single-quoted XML attribute.
func attr(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return strings.ReplaceAll(b.String(), "'", "&#39;")
}

func (d domainSpec) xml() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mem := d.MemoryMiB
	if mem == 0 {
		mem = 64
	}
	w("<domain type='qemu'>\n  <name>%s</name>\n", attr(d.Name))
	if d.NVDIMM != "" {
		// A memory device needs hotplug room and, on x86, a NUMA node.
		w("  <maxMemory slots='2' unit='MiB'>1024</maxMemory>\n")
	}
	w("  <memory unit='MiB'>%d</memory>\n  <vcpu>1</vcpu>\n", mem)
	if d.NVDIMM != "" {
		w("  <cpu><numa><cell id='0' cpus='0' memory='%d' unit='MiB'/></numa></cpu>\n", mem)
	}
	if d.FwCfg != "" {
		w("  <sysinfo type='fwcfg'>\n    <entry name='opt/org.example/dachook' file='%s'/>\n  </sysinfo>\n", attr(d.FwCfg))
	}
	w("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n")
	o := d.OS
	if o.Loader != "" {
		w("    <loader readonly='yes' type='pflash'>%s</loader>\n", attr(o.Loader))
	}
	if o.NVRAM != "" {
		w("    <nvram>%s</nvram>\n", attr(o.NVRAM))
	}
	if o.Kernel != "" {
		w("    <kernel>%s</kernel>\n", attr(o.Kernel))
	}
	if o.Initrd != "" {
		w("    <initrd>%s</initrd>\n", attr(o.Initrd))
	}
	if o.Cmdline != "" {
		w("    <cmdline>%s</cmdline>\n", attr(o.Cmdline))
	}
	if o.SLIC != "" {
		w("    <acpi>\n      <table type='slic'>%s</table>\n    </acpi>\n", attr(o.SLIC))
	}
	w("  </os>\n")
	if o.Loader != "" || o.SLIC != "" {
		w("  <features>\n    <acpi/>\n  </features>\n")
	}
	w("  <devices>\n")
	if d.SCSI {
		w("    <controller type='scsi' index='0' model='virtio-scsi'/>\n")
	}
	for _, dk := range d.Disks {
		b.WriteString(dk.xml())
	}
	if len(d.Serials) == 0 {
		w("    <serial type='pty'/>\n")
	}
	for i, s := range d.Serials {
		switch s.Type {
		case "unix":
			w("    <serial type='unix'>\n      <source mode='connect' path='%s'/>\n", attr(s.Path))
		case "file":
			app := ""
			if s.Append {
				app = " append='on'"
			}
			w("    <serial type='file'>\n      <source path='%s'%s/>\n", attr(s.Path), app)
		default:
			w("    <serial type='%s'>\n      <source path='%s'/>\n", attr(s.Type), attr(s.Path))
		}
		w("      <target port='%d'/>\n    </serial>\n", i)
	}
	if d.NVDIMM != "" {
		// nvdimm rather than virtio-pmem: libvirt 9.0 fails to start a
		// virtio-pmem domain ("virtio-pmem memory device info is not
		// handled yet").
		w("    <memory model='nvdimm' access='shared'>\n      <source>\n        <path>%s</path>\n      </source>\n"+
			"      <target>\n        <size unit='MiB'>4</size>\n        <node>0</node>\n      </target>\n    </memory>\n", attr(d.NVDIMM))
	}
	w("  </devices>\n")
	if d.Seclabel != "" {
		w("  %s\n", d.Seclabel)
	}
	w("</domain>\n")
	return b.String()
}

func (dk disk) xml() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	typ, device, bus := dk.Type, dk.Device, dk.Bus
	if typ == "" {
		typ = "file"
	}
	if device == "" {
		device = "disk"
	}
	if bus == "" {
		bus = "virtio"
	}
	w("    <disk type='%s' device='%s'>\n      <driver name='qemu' type='%s'", attr(typ), attr(device), attr(dk.Format))
	if dk.Cache != "" {
		w(" cache='%s'", attr(dk.Cache))
	}
	w("/>\n")
	var src string
	switch {
	case typ == "volume":
		src = fmt.Sprintf("pool='%s' volume='%s'", attr(dk.Pool), attr(dk.Volume))
	case dk.Source == "":
	case typ == "block":
		src = fmt.Sprintf("dev='%s'", attr(dk.Source))
	default:
		src = fmt.Sprintf("file='%s'", attr(dk.Source))
	}
	if src != "" {
		if dk.NoRelabel {
			w("      <source %s>\n        <seclabel model='dac' relabel='no'/>\n      </source>\n", src)
		} else {
			w("      <source %s/>\n", src)
		}
	}
	w("      <target dev='%s' bus='%s'/>\n", attr(dk.Target), attr(bus))
	if dk.ReadOnly {
		w("      <readonly/>\n")
	}
	if dk.Shareable {
		w("      <shareable/>\n")
	}
	if dk.Transient {
		w("      <transient/>\n")
	}
	w("    </disk>\n")
	return b.String()
}
