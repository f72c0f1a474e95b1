// Package gen writes the files the benchmarks run on: real qcow2 backing
// chains and the domain XML naming their top images.
//
// Images are written natively, not with qemu-img: 256 disks × 4 images
// must take milliseconds, not seconds of process spawns. Each image is what
// `qemu-img create -f qcow2 [-b BACKING -F qcow2] FILE 1G` writes (v3
// header, backing format extension, backing name, one refcount table and
// block, an empty L1 table), minus the feature name table, so `qemu-img
// check` accepts it and the hook reads a header exactly like a real one.
// The files are sparse: about 12 KiB on disk each.
package gen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Layout of the generated images, as qemu-img lays out an empty 1 GiB
// image with 64 KiB clusters.
const (
	clusterBits   = 16
	clusterSize   = 1 << clusterBits
	virtualSize   = 1 << 30
	headerLength  = 112 // v3 header incl. compression type, padded to 8
	refTableOff   = 1 * clusterSize
	refBlockOff   = 2 * clusterSize
	l1TableOff    = 3 * clusterSize
	l1Size        = 2 // 1 GiB / (8192 L2 entries × 64 KiB)
	fileSize      = l1TableOff + l1Size*8
	extBackingFmt = 0xe2792aca
)

// Qcow2 writes a qcow2 v3 image at path, mode 0644, replacing any file
// there. backing, when not empty, is stored as the backing file name with
// backing format qcow2.
func Qcow2(path, backing string) error {
	if len(backing) > 1023 {
		return fmt.Errorf("qcow2 %s: backing name of %d bytes is over 1023", path, len(backing))
	}
	var h bytes.Buffer
	be := func(v any) { _ = binary.Write(&h, binary.BigEndian, v) }
	be([]byte("QFI\xfb"))
	be(uint32(3)) // version
	backingOff := uint64(0)
	if backing != "" {
		// Header, backing format extension (8 + 8), end extension (8).
		backingOff = headerLength + 16 + 8
	}
	be(backingOff)
	be(uint32(len(backing)))
	be(uint32(clusterBits))
	be(uint64(virtualSize))
	be(uint32(0))          // crypt method
	be(uint32(l1Size))     // l1 size
	be(uint64(l1TableOff)) // l1 table offset
	be(uint64(refTableOff))
	be(uint32(1)) // refcount table clusters
	be(uint32(0)) // snapshots
	be(uint64(0)) // snapshots offset
	be(uint64(0)) // incompatible features
	be(uint64(0)) // compatible features
	be(uint64(0)) // autoclear features
	be(uint32(4)) // refcount order: 16-bit refcounts
	be(uint32(headerLength))
	h.Write(make([]byte, headerLength-h.Len())) // compression type zlib, padding
	if backing != "" {
		be(uint32(extBackingFmt))
		be(uint32(5))
		h.Write([]byte("qcow2\x00\x00\x00"))
	}
	be(uint64(0)) // end of extensions
	h.WriteString(backing)

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	// The refcount table's one entry points at the refcount block, whose
	// entries count the four clusters in use (header, table, block, L1).
	var rt, rb [8]byte
	binary.BigEndian.PutUint64(rt[:], refBlockOff)
	binary.BigEndian.PutUint64(rb[:], 0x0001000100010001)
	for _, w := range []struct {
		b   []byte
		off int64
	}{{h.Bytes(), 0}, {rt[:], refTableOff}, {rb[:], refBlockOff}} {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			_ = f.Close() // the write error is the one to report
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := f.Truncate(fileSize); err != nil {
		_ = f.Close() // the truncate error is the one to report
		return fmt.Errorf("size %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// Spec is a generated domain.
type Spec struct {
	// Name is the domain name, also in the XML.
	Name string
	// Disks and Depth are the shape: Disks disks, each a chain of Depth
	// images (the top image and Depth-1 backing files).
	Disks, Depth int
	// XML is the domain XML. It names only the top image of each disk,
	// with no <backingStore>, as libvirt passes it to the prepare hook
	// before it has probed the chain: the hook reads every header.
	XML []byte
	// XMLPath is where XML was written (dir/domain.xml).
	XMLPath string
	// Images lists every image, disk by disk, top image first.
	Images []string
}

// Domain creates disks × depth qcow2 images in dir (which must exist) and
// writes dir/domain.xml and dir/images (every image path, one a line). The
// images are owned by whoever runs it (root in the benchmarks: a backing
// file owned by root is one the hook's default policy accepts).
func Domain(dir string, disks, depth int) (*Spec, error) {
	if disks < 1 || depth < 1 {
		return nil, fmt.Errorf("generate domain: %d disks of depth %d: both must be at least 1", disks, depth)
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("generate domain: %q is not absolute", dir)
	}
	s := &Spec{Name: fmt.Sprintf("bench-%dx%d", disks, depth), Disks: disks, Depth: depth}
	for i := range disks {
		// Written base first, so a partly written chain never names a
		// missing file; listed top first.
		chain := make([]string, depth)
		for j := range depth {
			chain[j] = filepath.Join(dir, fmt.Sprintf("%s-d%03d-%d.qcow2", s.Name, i, j))
		}
		for j := depth - 1; j >= 0; j-- {
			backing := ""
			if j+1 < depth {
				backing = chain[j+1]
			}
			if err := Qcow2(chain[j], backing); err != nil {
				return nil, fmt.Errorf("generate domain: %w", err)
			}
		}
		s.Images = append(s.Images, chain...)
	}
	s.XML = domainXML(s.Name, uint64(len(s.Images)), s.Images, depth)
	s.XMLPath = filepath.Join(dir, "domain.xml")
	if err := os.WriteFile(s.XMLPath, s.XML, 0o644); err != nil {
		return nil, fmt.Errorf("generate domain: %w", err)
	}
	list := filepath.Join(dir, "images")
	if err := os.WriteFile(list, []byte(strings.Join(s.Images, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("generate domain: %w", err)
	}
	return s, nil
}

// domainXML is a domain as `virsh dumpxml --inactive` shows a plain q35
// guest, with one virtio disk per chain.
func domainXML(name string, id uint64, images []string, depth int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<domain type='kvm'>\n  <name>%s</name>\n  <uuid>6f1f3c36-9d39-4a34-8f4e-%012x</uuid>\n", name, id)
	b.WriteString("  <memory unit='KiB'>2097152</memory>\n  <currentMemory unit='KiB'>2097152</currentMemory>\n  <vcpu placement='static'>2</vcpu>\n")
	b.WriteString("  <os>\n    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n")
	b.WriteString("  <features><acpi/><apic/></features>\n  <cpu mode='host-passthrough' check='none' migratable='on'/>\n")
	b.WriteString("  <clock offset='utc'/>\n  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n")
	b.WriteString("  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n")
	for i := 0; i < len(images); i += depth {
		fmt.Fprintf(&b, "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='%s'/>\n      <target dev='vd%s' bus='virtio'/>\n    </disk>\n", images[i], DiskSuffix(i/depth))
	}
	b.WriteString("    <interface type='network'>\n      <mac address='52:54:00:12:34:56'/>\n      <source network='default'/>\n      <model type='virtio'/>\n    </interface>\n")
	b.WriteString("    <serial type='pty'><target port='0'/></serial>\n    <console type='pty'><target type='serial' port='0'/></console>\n")
	b.WriteString("    <memballoon model='virtio'/>\n  </devices>\n</domain>\n")
	return b.Bytes()
}

// Overlays creates one base image in dir (which must exist) and n domains,
// each with one disk: its own qcow2 overlay on that shared base, as when
// many guests are cloned from one template. Domain i's XML is written to
// dir/storm-NNNN.xml.
func Overlays(dir string, n int) ([]*Spec, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("generate overlays: %q is not absolute", dir)
	}
	base := filepath.Join(dir, "base.qcow2")
	if err := Qcow2(base, ""); err != nil {
		return nil, fmt.Errorf("generate overlays: %w", err)
	}
	specs := make([]*Spec, 0, n)
	for i := range n {
		s := &Spec{Name: fmt.Sprintf("storm-%04d", i), Disks: 1, Depth: 2}
		top := filepath.Join(dir, s.Name+".qcow2")
		if err := Qcow2(top, base); err != nil {
			return nil, fmt.Errorf("generate overlays: %w", err)
		}
		s.Images = []string{top, base}
		s.XML = domainXML(s.Name, 1<<32+uint64(i), s.Images, 2)
		s.XMLPath = filepath.Join(dir, s.Name+".xml")
		if err := os.WriteFile(s.XMLPath, s.XML, 0o644); err != nil {
			return nil, fmt.Errorf("generate overlays: %w", err)
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// DiskSuffix names disks like the kernel does: a..z, aa..zz, ...
func DiskSuffix(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('a'+(i-1)%26)) + s
	}
	return s
}

// Shape is one of the benchmark domains.
type Shape struct {
	Name         string
	Disks, Depth int
}

// Shapes are the benchmarked domains: one disk; 16 disks each a 4-deep qcow2
// chain (64 images); 256 single-image disks.
var Shapes = []Shape{
	{"disks=1", 1, 1},
	{"disks=16x4", 16, 4},
	{"disks=256", 256, 1},
}
