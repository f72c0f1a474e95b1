package sysfs

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const mdevUUID = "c2177883-f1bb-47f0-914d-32a22e3a8804"

func vfioHost(t *testing.T) *tree {
	tr := newTree(t)
	pci := func(addr, group string) {
		devDir := "devices/pci0000:00/" + addr
		tr.file(devDir+"/vendor", "0x8086")
		if group != "" {
			tr.link(devDir+"/iommu_group", "../../../kernel/iommu_groups/"+group)
		}
		tr.link("bus/pci/devices/"+addr, "../../../"+devDir)
	}
	vfio := func(group string, minor uint32) {
		tr.file("class/vfio/"+group+"/dev", "243:"+itoa(minor))
		tr.node("vfio/"+group, 243, minor)
	}
	pci("0000:06:12.5", "12")
	pci("0000:06:12.6", "12") // same group
	pci("0000:00:1a.0", "3")
	pci("10000:01:00.0", "40") // VMD domain: five hex digits
	pci("0000:07:00.0", "15")  // not bound to vfio-pci: no class/vfio/15
	pci("0000:08:00.0", "")    // no IOMMU
	vfio("12", 1)
	vfio("3", 0)
	vfio("40", 4)
	vfio("20", 2)
	tr.dir("kernel/iommu_groups/15")

	// A planted link must not steer the lookup out of iommu_groups.
	tr.dir("devices/evil/0000:0a:00.0")
	tr.link("devices/evil/0000:0a:00.0/iommu_group", "../../../../../etc")
	tr.link("bus/pci/devices/0000:0a:00.0", "../../../devices/evil/0000:0a:00.0")
	tr.dir("devices/evil/0000:0b:00.0")
	tr.link("devices/evil/0000:0b:00.0/iommu_group", "../../../kernel/iommu_groups/12/..")
	tr.link("bus/pci/devices/0000:0b:00.0", "../../../devices/evil/0000:0b:00.0")
	tr.file("class/vfio/13/dev", "garbage")
	pci("0000:0c:00.0", "13")

	mdev := "devices/pci0000:00/0000:00:02.0/" + mdevUUID
	tr.link(mdev+"/iommu_group", "../../../../kernel/iommu_groups/20")
	tr.link("bus/mdev/devices/"+mdevUUID, "../../../"+mdev)
	return tr
}

func TestPCIGroup(t *testing.T) {
	tr := vfioHost(t)
	group := func(n string, minor uint32) Device {
		return Device{Path: filepath.Join(tr.root.Dev, "vfio", n), Major: 243, Minor: minor, Char: true}
	}
	tests := []struct {
		name    string
		addr    string
		want    Device
		wantErr error
	}{
		{name: "found", addr: "0000:06:12.5", want: group("12", 1)},
		{name: "same group", addr: "0000:06:12.6", want: group("12", 1)},
		{name: "upper case", addr: "0000:00:1A.0", want: group("3", 0)},
		{name: "five digit domain", addr: "10000:01:00.0", want: group("40", 4)},
		{name: "not bound to vfio", addr: "0000:07:00.0", wantErr: ErrNotFound},
		{name: "no iommu group", addr: "0000:08:00.0", wantErr: ErrNotFound},
		{name: "no such device", addr: "0000:09:00.0", wantErr: ErrNotFound},
		{name: "group link leaves iommu_groups", addr: "0000:0a:00.0", wantErr: ErrMalformed},
		{name: "group link ends in dot dot", addr: "0000:0b:00.0", wantErr: ErrMalformed},
		{name: "vfio dev attribute garbage", addr: "0000:0c:00.0", wantErr: ErrMalformed},
		{name: "traversal", addr: "../../../etc/passwd", wantErr: ErrInvalid},
		{name: "traversal after address", addr: "0000:06:12.5/../0000:07:00.0", wantErr: ErrInvalid},
		{name: "trailing NUL", addr: "0000:06:12.5\x00", wantErr: ErrInvalid},
		{name: "leading blank", addr: " 0000:06:12.5", wantErr: ErrInvalid},
		{name: "slot out of range", addr: "0000:06:20.0", wantErr: ErrInvalid},
		{name: "function out of range", addr: "0000:06:12.8", wantErr: ErrInvalid},
		{name: "no domain", addr: "06:12.5", wantErr: ErrInvalid},
		{name: "short bus", addr: "0000:6:12.5", wantErr: ErrInvalid},
		{name: "signed domain", addr: "+000:06:12.5", wantErr: ErrInvalid},
		{name: "hex prefix", addr: "0x00:06:12.5", wantErr: ErrInvalid},
		{name: "empty", addr: "", wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tr.root.PCIGroup(tc.addr)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("PCIGroup(%q) = %v, %v; want error %v", tc.addr, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("PCIGroup(%q) = %v", tc.addr, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("PCIGroup(%q) mismatch (-want +got):\n%s", tc.addr, diff)
			}
			tr.checkNode(got)
		})
	}
}

func TestMdevGroup(t *testing.T) {
	tr := vfioHost(t)
	want := Device{Path: filepath.Join(tr.root.Dev, "vfio/20"), Major: 243, Minor: 2, Char: true}
	tests := []struct {
		name    string
		uuid    string
		wantErr error
	}{
		{name: "canonical", uuid: mdevUUID},
		{name: "upper case", uuid: "C2177883-F1BB-47F0-914D-32A22E3A8804"},
		{name: "no hyphens", uuid: "c2177883f1bb47f0914d32a22e3a8804"},
		{name: "blanks around like virUUIDParse", uuid: "  c2177883-f1bb-47f0-914d-32a22e3a8804\n"},
		{name: "odd separators like virUUIDParse", uuid: "c2 17-78--83f1bb47f0914d32a22e3a8804"},
		{name: "unknown", uuid: "00000000-0000-0000-0000-000000000000", wantErr: ErrNotFound},
		{name: "traversal", uuid: "../../../etc", wantErr: ErrInvalid},
		{name: "traversal after uuid", uuid: mdevUUID + "/../x", wantErr: ErrInvalid},
		{name: "too short", uuid: "c2177883-f1bb-47f0-914d-32a22e3a88", wantErr: ErrInvalid},
		{name: "too long", uuid: mdevUUID + "00", wantErr: ErrInvalid},
		{name: "not hex", uuid: "c2177883-f1bb-47f0-914d-32a22e3a880g", wantErr: ErrInvalid},
		{name: "split pair", uuid: "c-2177883f1bb47f0914d32a22e3a8804", wantErr: ErrInvalid},
		{name: "NUL", uuid: mdevUUID + "\x00", wantErr: ErrInvalid},
		{name: "empty", uuid: "", wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tr.root.MdevGroup(tc.uuid)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("MdevGroup(%q) = %v, %v; want error %v", tc.uuid, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("MdevGroup(%q) = %v", tc.uuid, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("MdevGroup(%q) mismatch (-want +got):\n%s", tc.uuid, diff)
			}
			tr.checkNode(got)
		})
	}
}
