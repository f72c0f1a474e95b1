package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// checkInvariants asserts what Parse promises for every Domain it returns.
func checkInvariants(t testing.TB, name string, d *Domain) {
	t.Helper()
	for i, r := range d.Resources {
		if r.Kind == "" || r.From == "" {
			t.Errorf("%s: resource %d has empty Kind or From: %+v", name, i, r)
		}
		lookups := 0
		for _, set := range []bool{r.USB != nil, r.SCSI != nil, r.PCI != "", r.Mdev != "", r.Volume != nil} {
			if set {
				lookups++
			}
		}
		switch {
		case r.Path != "":
			if strings.IndexByte(r.Path, 0) >= 0 || !filepath.IsAbs(r.Path) || filepath.Clean(r.Path) != r.Path {
				t.Errorf("%s: resource %d (%s): path %q is not absolute and clean", name, i, r.From, r.Path)
			}
			if lookups != 0 {
				t.Errorf("%s: resource %d (%s) has a Path and a host lookup", name, i, r.From)
			}
		case lookups != 1:
			t.Errorf("%s: resource %d (%s) has no Path and %d host lookups, want 1", name, i, r.From, lookups)
		}
		if r.Expect == 0 {
			t.Errorf("%s: resource %d (%s) expects no file type", name, i, r.From)
		}
		if _, ok := kinds[r.Kind]; !ok {
			t.Errorf("%s: resource %d (%s) has kind %q, which has no row in the kinds table", name, i, r.From, r.Kind)
		}
		if r.Expect&^r.Kind.Types() != 0 {
			t.Errorf("%s: resource %d (%s) expects types %b, beyond those of kind %s (%b)", name, i, r.From, r.Expect, r.Kind, r.Kind.Types())
		}
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, name string) *Domain {
	t.Helper()
	d, err := Parse(readFixture(t, name))
	if err != nil {
		t.Fatalf("Parse(%s) = %v", name, err)
	}
	checkInvariants(t, name, d)
	return d
}

// TestGolden compares Parse's output for every testdata/*.xml with
// testdata/*.golden. Run `go test -run TestGolden -update` to rewrite.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".xml")
		t.Run(name, func(t *testing.T) {
			d := mustParse(t, name+".xml")
			got, err := json.MarshalIndent(d, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Parse(%s.xml) mismatch (-want +got):\n%s", name, diff)
			}
		})
	}
}

// find returns the resources whose From starts with prefix.
func find(d *Domain, prefix string) []Resource {
	var out []Resource
	for _, r := range d.Resources {
		if strings.HasPrefix(r.From, prefix) {
			out = append(out, r)
		}
	}
	return out
}

func one(t *testing.T, d *Domain, from string) Resource {
	t.Helper()
	for _, r := range d.Resources {
		if r.From == from {
			return r
		}
	}
	t.Fatalf("no resource from %q in %+v", from, d.Resources)
	return Resource{}
}

func none(t *testing.T, d *Domain, prefix string) {
	t.Helper()
	if rs := find(d, prefix); len(rs) != 0 {
		t.Errorf("resources from %q = %+v, want none", prefix, rs)
	}
}

// The golden files pin everything; these spell out the rules that matter
// so that a wrong golden file cannot be blessed by -update unnoticed.
func TestDisks(t *testing.T) {
	d := mustParse(t, "disks.xml")
	if d.Name != "disks" || d.UUID != "c7a5fdbd-edaf-9455-926a-d65c16db1809" || d.Label != "+107:+107" || !d.Relabel {
		t.Errorf("domain = %q %q label %q relabel %v", d.Name, d.UUID, d.Label, d.Relabel)
	}
	vda := one(t, d, "disk[target=vda]/source")
	if vda.Kind != KindDisk || !vda.ProbeBacking || vda.Format != "qcow2" || vda.Expect != TypeRegular {
		t.Errorf("vda = %+v, want qcow2 disk with ProbeBacking, a regular file only", vda)
	}
	vdb := one(t, d, "disk[target=vdb]/source")
	if vdb.Path != "/var/lib/libvirt/images/vdb.img" || vdb.ProbeBacking || !vdb.Shared {
		t.Errorf("vdb = %+v, want cleaned path, raw so no probe, shared", vdb)
	}
	if r := one(t, d, "disk[target=vdc]/source"); !r.ReadOnly || r.Path != "/dev/vg0/data" || r.Expect != TypeBlock {
		t.Errorf("vdc = %+v, want read-only block, a block device only", r)
	}
	if r := one(t, d, "disk[target=sda]/source"); r.Kind != KindLun {
		t.Errorf("sda kind = %q, want lun", r.Kind)
	}
	none(t, d, "disk[target=hdc]") // empty cdrom
	if r := one(t, d, "disk[target=hdd]/source"); r.Kind != KindCdrom || !r.Optional || !r.ReadOnly {
		t.Errorf("hdd = %+v, want optional read-only cdrom", r)
	}
	if r := one(t, d, "disk[target=fda]/source"); r.Kind != KindFloppy || !r.Optional {
		t.Errorf("fda = %+v, want optional floppy", r)
	}
	vdd := one(t, d, "disk[target=vdd]/source")
	if vdd.Path != "" || vdd.Volume == nil || *vdd.Volume != (VolumeRef{Pool: "default", Volume: "vol1.qcow2"}) || !vdd.ProbeBacking || vdd.Expect != TypeRegular|TypeBlock {
		t.Errorf("vdd = %+v, want volume default/vol1.qcow2 with ProbeBacking, file or block (the pool decides)", vdd)
	}
	if r := one(t, d, "disk[target=sdb]/source"); r.Kind != KindLun || r.Volume == nil || r.Volume.Mode != "host" {
		t.Errorf("sdb = %+v, want lun volume with mode host", r)
	}
	none(t, d, "disk[target=vde]") // network
	none(t, d, "disk[target=hda]") // dir
	none(t, d, "disk[target=vdg]") // vhost-user
	if r := one(t, d, "disk[target=vdf]/source"); r.Kind != KindVFIO || r.PCI != "0000:01:00.0" {
		t.Errorf("vdf = %+v, want vfio 0000:01:00.0", r)
	}
	if r := one(t, d, "disk[13]/source"); r.Path != "/srv/notarget.img" {
		t.Errorf("disk[13] = %+v", r)
	}
}

func TestBackingChains(t *testing.T) {
	d := mustParse(t, "backing.xml")
	froms := func(prefix string) []string {
		var out []string
		for _, r := range find(d, prefix) {
			out = append(out, r.From)
		}
		return out
	}
	want := []string{"disk[target=vda]/source", "disk[target=vda]/backingStore[1]/source", "disk[target=vda]/backingStore[2]/source"}
	if diff := cmp.Diff(want, froms("disk[target=vda]")); diff != "" {
		t.Errorf("vda chain (-want +got):\n%s", diff)
	}
	for _, r := range find(d, "disk[target=vda]") {
		if r.ProbeBacking {
			t.Errorf("%s: ProbeBacking under a <backingStore/> terminator", r.From)
		}
	}
	base := one(t, d, "disk[target=vda]/backingStore[2]/source")
	if base.Kind != KindBacking || !base.ReadOnly || base.Format != "raw" || base.Path != "/dev/vg/base" || base.Expect != TypeBlock {
		t.Errorf("vda base = %+v, want a read-only raw block device", base)
	}
	if r := one(t, d, "disk[target=vda]/backingStore[1]/source"); r.Expect != TypeRegular {
		t.Errorf("vda mid (type='file') Expect = %d, want regular file only", r.Expect)
	}
	if r := one(t, d, "disk[target=vdb]/source"); r.ProbeBacking {
		t.Errorf("vdb top probes although the XML names its backing image")
	}
	if r := one(t, d, "disk[target=vdb]/backingStore[1]/source"); !r.ProbeBacking {
		t.Errorf("vdb deepest image must be probed: %+v", r)
	}
	if r := one(t, d, "disk[target=vdc]/source"); r.ProbeBacking {
		t.Errorf("vdc has an empty <backingStore/> yet probes")
	}
	// relabel='no' on the top covers the chain; an own label wins.
	if r := one(t, d, "disk[target=vdd]/source"); r.Skip != skipRelabelNo {
		t.Errorf("vdd top Skip = %q", r.Skip)
	}
	if r := one(t, d, "disk[target=vdd]/backingStore[1]/source"); r.Skip != skipRelabelNo {
		t.Errorf("vdd mid Skip = %q, want inherited", r.Skip)
	}
	if r := one(t, d, "disk[target=vdd]/backingStore[2]/source"); r.Skip != "" || r.Label != "qemu:kvm" || !r.ProbeBacking {
		t.Errorf("vdd base = %+v, want own label, not skipped, probed", r)
	}
	if r := one(t, d, "disk[target=vde]/backingStore[1]/source"); r.Label != "+1000:+1000" {
		t.Errorf("vde base Label = %q, want inherited +1000:+1000", r.Label)
	}
	if r := one(t, d, "disk[target=vdf]/backingStore[2]/source"); r.Path != "/images/f-base.qcow2" || !r.ProbeBacking {
		t.Errorf("vdf base below network = %+v", r)
	}
	none(t, d, "disk[target=vdf]/backingStore[1]")
	if r := one(t, d, "disk[target=vdg]/source/dataStore/source"); r.Kind != KindDataFile || r.Path != "/images/g.data" {
		t.Errorf("vdg data file = %+v", r)
	}
	if r := one(t, d, "disk[target=vdh]/source"); r.Volume == nil || r.ProbeBacking {
		t.Errorf("vdh volume top = %+v", r)
	}
}

func TestSeclabels(t *testing.T) {
	tests := []struct {
		file    string
		relabel bool
		label   string
	}{
		{"seclabel-none.xml", false, ""},
		{"seclabel-dac-norelabel.xml", false, ""},
		{"seclabel-other-models.xml", true, ""},
		{"disks.xml", true, "+107:+107"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d := mustParse(t, tt.file)
			if d.Relabel != tt.relabel || d.Label != tt.label {
				t.Errorf("Relabel, Label = %v, %q; want %v, %q", d.Relabel, d.Label, tt.relabel, tt.label)
			}
		})
	}
	// A device seclabel without model='dac' is not the DAC driver's.
	d := mustParse(t, "seclabel-other-models.xml")
	if r := one(t, d, "disk[target=vda]/source"); r.Skip != "" {
		t.Errorf("model-less device seclabel skipped the disk: %+v", r)
	}
}

func TestChardevs(t *testing.T) {
	d := mustParse(t, "chardevs.xml")
	s0 := one(t, d, "serial[0]/source")
	if s0.Kind != KindChardevFile || !s0.StdioFileOnly || !s0.Optional || s0.Expect != TypeRegular {
		t.Errorf("serial[0] = %+v", s0)
	}
	if r := one(t, d, "serial[1]/source"); r.Kind != KindChardevDev || r.Expect != TypeChar {
		t.Errorf("serial[1] = %+v", r)
	}
	none(t, d, "serial[2]") // pty
	if r := one(t, d, "serial[3]/source"); r.StdioFileOnly || r.Label != "qemu:qemu" {
		t.Errorf("serial[3] with own DAC label = %+v, want labelled regardless of stdio handler", r)
	}
	if r := one(t, d, "parallel[0]/source"); r.Kind != KindChardevPipe || r.Path != "/run/vm/parallel0" {
		t.Errorf("parallel[0] = %+v", r)
	}
	if r := one(t, d, "parallel[1]/source"); r.Skip != skipRelabelNo {
		t.Errorf("parallel[1] = %+v", r)
	}
	if r := one(t, d, "channel[0]/source"); r.Kind != KindChardevSocket || r.Skip != "" || r.Expect != TypeSocket {
		t.Errorf("channel[0] = %+v", r)
	}
	if r := one(t, d, "channel[1]/source"); r.Skip == "" {
		t.Errorf("bind socket channel[1] not skipped: %+v", r)
	}
	none(t, d, "channel[2]") // path generated by libvirt
	none(t, d, "console[0]") // mirrors serial[0]
	one(t, d, "console[1]/source")
	one(t, d, "smartcard[0]/source")
	none(t, d, "smartcard[1]")
	if r := one(t, d, "tpm[0]/backend/device"); r.Kind != KindTPM || r.Path != "/dev/tpm0" {
		t.Errorf("tpm[0] = %+v", r)
	}
	if r := one(t, d, "tpm[1]/backend/source"); r.Kind != KindChardevSocket {
		t.Errorf("tpm[1] = %+v", r)
	}
	none(t, d, "redirdev")
	for _, r := range d.Resources {
		if strings.Contains(r.Path, "extra.log") {
			t.Errorf("chardev <log> listed: %+v", r)
		}
	}
}

func TestHostdevs(t *testing.T) {
	d := mustParse(t, "hostdevs.xml")
	if r := one(t, d, "hostdev[0]/source"); r.Kind != KindUSB || r.USB == nil ||
		*r.USB != (USBSelector{Vendor: 0x046d, Product: 0xc52b}) || !r.Optional || r.Expect != TypeChar {
		t.Errorf("hostdev[0] = %+v", r)
	}
	if r := one(t, d, "hostdev[1]/source"); r.USB == nil || *r.USB != (USBSelector{Bus: 3, Device: 7}) || r.Optional {
		t.Errorf("hostdev[1] = %+v", r)
	}
	if r := one(t, d, "hostdev[2]/source"); r.Kind != KindSCSI || r.SCSI == nil ||
		*r.SCSI != (SCSIAddress{Adapter: "scsi_host0", Unit: 5}) || !r.ReadOnly || !r.Shared {
		t.Errorf("hostdev[2] = %+v", r)
	}
	none(t, d, "hostdev[3]") // iSCSI
	if r := one(t, d, "hostdev[4]/source"); r.Kind != KindSCSIHost || r.Path != "/dev/vhost-scsi" {
		t.Errorf("hostdev[4] = %+v", r)
	}
	if r := one(t, d, "hostdev[5]/source"); r.Kind != KindVFIO || r.PCI != "0000:06:12.5" {
		t.Errorf("hostdev[5] = %+v", r)
	}
	if r := one(t, d, "hostdev[6]/source"); r.PCI != "0000:81:00.1" {
		t.Errorf("hostdev[6] = %+v", r)
	}
	none(t, d, "hostdev[7]") // legacy kvm assignment
	if r := one(t, d, "hostdev[8]/source"); r.Kind != KindVFIO || r.Mdev != "53764d0e-85a0-42b4-af5c-2046b460b1dc" {
		t.Errorf("hostdev[8] = %+v", r)
	}
	if r := one(t, d, "hostdev[9]/source/block"); r.Path != "/dev/sdf1" || r.Expect != TypeBlock {
		t.Errorf("hostdev[9] = %+v", r)
	}
	if r := one(t, d, "hostdev[10]/source/char"); r.Path != "/dev/input/event3" || r.Expect != TypeChar {
		t.Errorf("hostdev[10] = %+v", r)
	}
	none(t, d, "hostdev[11]")
}

func TestOSAndDevices(t *testing.T) {
	d := mustParse(t, "os.xml")
	for from, want := range map[string]Kind{
		"os/kernel": KindKernel, "os/initrd": KindInitrd, "os/dtb": KindDTB,
		"os/acpi/table[0]": KindACPITable, "os/nvram": KindNVRAM,
		"sysinfo/entry[opt/com.coreos/config]": KindFWCfg,
	} {
		if r := one(t, d, from); r.Kind != want || r.Expect != TypeRegular {
			t.Errorf("%s = %+v, want kind %s", from, r, want)
		}
	}
	none(t, d, "sysinfo/entry[opt/com.example/name]")
	none(t, d, "os/loader")
	if len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "writable") {
		t.Errorf("Notes = %q, want one about the writable loader", d.Notes)
	}

	for _, f := range []string{"efi-auto.xml", "nvram-generated.xml"} {
		if d := mustParse(t, f); len(d.Notes) != 1 || len(d.Resources) != 0 {
			t.Errorf("%s: Notes = %q, Resources = %+v; want one note, nothing listed", f, d.Notes, d.Resources)
		}
	}
	d = mustParse(t, "nvram-source.xml")
	if r := one(t, d, "os/nvram/source"); r.Skip != skipRelabelNo || r.Path != "/var/lib/libvirt/qemu/nvram/guest_VARS.fd" {
		t.Errorf("nvram source = %+v", r)
	}
	if len(d.Notes) != 0 {
		t.Errorf("nvram-source Notes = %q, want none", d.Notes)
	}

	d = mustParse(t, "devices.xml")
	for _, from := range []string{"input[0]/source", "input[1]/source"} {
		if r := one(t, d, from); r.Kind != KindEvdev || r.Expect != TypeChar {
			t.Errorf("%s = %+v", from, r)
		}
	}
	for _, r := range find(d, "graphics[") {
		if r.Kind != KindRenderNode || r.Skip == "" {
			t.Errorf("render node not skipped: %+v", r)
		}
	}
	if n := len(find(d, "graphics[")); n != 2 {
		t.Errorf("%d render nodes, want 2", n)
	}
	if r := one(t, d, "memory[0]/source/path"); r.Kind != KindMemory || r.Path != "/dev/dax0.0" {
		t.Errorf("memory[0] = %+v", r)
	}
	one(t, d, "memory[1]/source/path")
	none(t, d, "memory[2]")
	if n := len(find(d, "memory[3]")); n != 2 {
		t.Errorf("sgx nodes = %d, want 2 (and once per domain)", n)
	}
	none(t, d, "memory[4]")
	if r := one(t, d, "launchSecurity"); r.Path != "/dev/sev" {
		t.Errorf("sev = %+v", r)
	}
}

func TestParseErrors(t *testing.T) {
	wrap := func(devices string) string {
		return "<domain type='kvm'><name>x</name><devices>" + devices + "</devices></domain>"
	}
	tests := []struct {
		name, xml, want string
	}{
		{"empty", "  \n", "domain XML: empty input"},
		{"invalid utf-8", "<domain><name>\xff</name></domain>", "domain XML: not valid UTF-8"},
		{"doctype", "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY x 'y'>]><domain><name>&x;</name></domain>",
			"domain XML: DOCTYPE/ENTITY declarations are not allowed (found <!DOCTYPE)"},
		{"entity in body", "<domain><!ENTITY x 'y'><name>x</name></domain>",
			"domain XML: DOCTYPE/ENTITY declarations are not allowed (found <!ENTITY)"},
		{"network root", "<network><name>default</name></network>",
			"domain XML: not a <domain> element (root is <network>)"},
		{"prefixed root", "<x:domain xmlns:x='urn:x'/>", "domain XML: not a <domain> element (root is <x:domain>)"},
		{"text first", "hello <domain/>", "domain XML: text before the root element"},
		{"unterminated comment", "<!-- <domain/>", "domain XML: unterminated comment"},
		{"malformed", "<domain><name>x</domain>", "domain XML: XML syntax error on line 1: element <name> closed by </domain>"},
		{"relative disk", wrap("<disk type='file' device='disk'><source file='foo.img'/><target dev='vda'/></disk>"),
			`disk[target=vda]/source: path "foo.img" is not absolute`},
		{"relative backing", wrap("<disk type='file'><source file='/a.qcow2'/><backingStore type='file'><source file='b.qcow2'/></backingStore><target dev='vda'/></disk>"),
			`disk[target=vda]/backingStore[1]/source: path "b.qcow2" is not absolute`},
		{"dotdot", wrap("<disk type='file'><source file='/srv/../etc/shadow'/><target dev='vda'/></disk>"),
			`disk[target=vda]/source: path "/srv/../etc/shadow" has a ".." element`},
		{"nul", wrap("<disk type='file'><source file='/srv/a&#0;b'/><target dev='vda'/></disk>"),
			"domain XML: XML syntax error on line 1: illegal character code U+0000"},
		{"relative kernel", "<domain><os><kernel>vmlinuz</kernel></os></domain>", `os/kernel: path "vmlinuz" is not absolute`},
		{"relative serial", wrap("<serial type='file'><source path='serial.log'/></serial>"), `serial[0]/source: path "serial.log" is not absolute`},
		{"relative fwcfg", "<domain><sysinfo type='fwcfg'><entry name='opt/a' file='a.ign'/></sysinfo></domain>",
			`sysinfo/entry[opt/a]: path "a.ign" is not absolute`},
		{"bad usb id", wrap("<hostdev mode='subsystem' type='usb'><source><vendor id='0xzz'/><product id='1'/></source></hostdev>"),
			`hostdev[0]/source/vendor: bad USB id "0xzz"`},
		{"usb without selector", wrap("<hostdev mode='subsystem' type='usb'><source/></hostdev>"),
			"hostdev[0]/source: USB hostdev needs a vendor id or a bus and device address"},
		{"pci out of range", wrap("<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='0x100' slot='0' function='0'/></source></hostdev>"),
			"hostdev[0]/source/address: PCI address out of range"},
		{"unknown disk device", wrap("<disk type='file' device='tape'><source file='/a'/><target dev='st0'/></disk>"),
			`disk[target=st0]: unknown disk device "tape"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse([]byte(tt.xml))
			if err == nil {
				t.Fatalf("Parse = %+v, nil; want error %q", d, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse error = %q, want %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// NUL cannot be written in XML at all, but a path string can still reach
// cleanPath from other callers' data; the check must hold on its own.
func TestCleanPathNUL(t *testing.T) {
	_, err := cleanPath("os/kernel", "/boot/a\x00b")
	if err == nil || err.Error() != `os/kernel: path "/boot/a\x00b" contains NUL` {
		t.Errorf("cleanPath(NUL) = %v", err)
	}
}

func TestParseSizeLimit(t *testing.T) {
	big := make([]byte, MaxXMLSize+1)
	copy(big, "<domain>")
	for i := len("<domain>"); i < len(big); i++ {
		big[i] = ' '
	}
	_, err := Parse(big)
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "16 MiB") {
		t.Errorf("Parse(16 MiB + 1) = %v, want size error", err)
	}
	// Exactly at the limit is allowed through to the decoder.
	ok := bytes.Repeat([]byte(" "), MaxXMLSize)
	copy(ok, "<domain><name>x</name></domain>")
	if _, err := Parse(ok); err != nil {
		t.Errorf("Parse(16 MiB) = %v, want nil", err)
	}
}

func TestParseBOMAndPrologue(t *testing.T) {
	in := "\xef\xbb\xbf<?xml version='1.0'?>\n<!-- c -->\n<?pi x?>\n<domain><name>bom</name><devices><disk type='file'><source file='/a.img'/><target dev='vda'/></disk></devices></domain>"
	d, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	if d.Name != "bom" || len(d.Resources) != 1 || d.Resources[0].Path != "/a.img" {
		t.Errorf("Parse = %+v", d)
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"vm1", true},
		{"web server (prod)", true},
		{"ünïcode", true},
		{"", false},
		{"a/b", false},
		{"vm1\nlevel=info msg=chown", false},
		{"vm\r1", false},
		{"vm\x1b[2K", false},
	} {
		err := CheckName(tc.name)
		if (err == nil) != tc.ok || (err != nil && (!errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "\n"))) {
			t.Errorf("CheckName(%q) = %v, want ok=%v (or one line matching ErrInvalid)", tc.name, err, tc.ok)
		}
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a\nb", "a; b"},
		{"a\r\nb", "a ; b"},
		{"tab\tstays", "tab\tstays"},
		{"esc \x1b[2K here", `esc \x1b[2K here`},
		{"nel \u0085 and ls \u2028", `nel \u0085 and ls \u2028`},
		{"ünïcode", "ünïcode"},
	} {
		if got := OneLine(tc.in); got != tc.want {
			t.Errorf("OneLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
