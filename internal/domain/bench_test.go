package domain

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/bench/gen"
)

// genDomainXML builds a domain with n qcow2 disks, each with a backing
// chain of depth images spelled out in the XML (terminated when depth>0),
// plus a serial console and a USB hostdev, the shape of a large real VM.
func genDomainXML(n, depth int) []byte {
	var b bytes.Buffer
	b.WriteString("<domain type='kvm'>\n  <name>bench</name>\n  <uuid>00000000-0000-0000-0000-0000000000be</uuid>\n")
	b.WriteString("  <seclabel type='dynamic' model='dac' relabel='yes'><label>+107:+107</label></seclabel>\n")
	b.WriteString("  <os><type arch='x86_64' machine='q35'>hvm</type><kernel>/boot/vmlinuz</kernel></os>\n  <devices>\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='/var/lib/libvirt/images/disk%d.qcow2'/>\n", i)
		for j := 1; j <= depth; j++ {
			fmt.Fprintf(&b, "%*s<backingStore type='file'><format type='qcow2'/><source file='/var/lib/libvirt/images/base%d-%d.qcow2'/>\n", 4+2*j, "", i, j)
		}
		if depth > 0 {
			fmt.Fprintf(&b, "%*s<backingStore/>\n", 6+2*depth, "")
		}
		for j := depth; j >= 1; j-- {
			fmt.Fprintf(&b, "%*s</backingStore>\n", 4+2*j, "")
		}
		fmt.Fprintf(&b, "      <target dev='vd%s' bus='virtio'/>\n    </disk>\n", gen.DiskSuffix(i))
	}
	b.WriteString("    <serial type='file'><source path='/var/log/bench-serial.log'/><target port='0'/></serial>\n")
	b.WriteString("    <hostdev mode='subsystem' type='usb'><source><vendor id='0x046d'/><product id='0xc52b'/></source></hostdev>\n")
	b.WriteString("  </devices>\n</domain>\n")
	return b.Bytes()
}

func TestGenDomainXML(t *testing.T) {
	d, err := Parse(genDomainXML(16, 4))
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, "generated", d)
	// 16 disks × (top + 4 backing) + kernel + serial + usb.
	if got, want := len(d.Resources), 16*5+3; got != want {
		t.Errorf("%d resources, want %d", got, want)
	}
	if r := one(t, d, "disk[target=vdp]/backingStore[4]/source"); r.ProbeBacking {
		t.Errorf("terminated chain probes: %+v", r)
	}
}

func BenchmarkParse(b *testing.B) {
	for _, c := range []struct{ disks, depth int }{{1, 0}, {16, 4}, {256, 0}} {
		data := genDomainXML(c.disks, c.depth)
		b.Run(fmt.Sprintf("disks=%d/depth=%d", c.disks, c.depth), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
