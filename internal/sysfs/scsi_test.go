package sysfs

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func scsiHost(t *testing.T) *tree {
	tr := newTree(t)
	// As on a real host, bus/scsi/devices holds links to the device
	// directories; scsi_generic/sgN/dev is the kernel's number.
	devDir := "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0"
	tr.file(devDir+"/scsi_generic/sg0/dev", "21:0")
	tr.link("bus/scsi/devices/0:0:0:0", "../../../"+devDir)
	tr.node("sg0", 21, 0)

	tr.dir("bus/scsi/devices/2:0:1:3/scsi_generic/sg5") // no dev attribute: 21:5 assumed
	tr.node("sg5", 21, 5)
	tr.dir("bus/scsi/devices/1:0:0:18446744073709551615/scsi_generic/sg12")
	tr.node("sg12", 21, 12)
	tr.dir("bus/scsi/devices/3:0:0:0/scsi_generic")        // sg not loaded
	tr.dir("bus/scsi/devices/4:0:0:0/scsi_generic/sg1")    // two entries
	tr.dir("bus/scsi/devices/4:0:0:0/scsi_generic/sg2")    //
	tr.dir("bus/scsi/devices/5:0:0:0/scsi_generic/passwd") // not sgN
	tr.dir("bus/scsi/devices/6:0:0:0/scsi_generic/sg7")    // dev disagrees
	tr.file("bus/scsi/devices/6:0:0:0/scsi_generic/sg7/dev", "21:8")
	tr.dir("bus/scsi/devices/7:0:0:0/scsi_generic/sg07")         // leading zero
	tr.dir("bus/scsi/devices/8:0:0:0/block/sda")                 // disk without sg
	tr.file("bus/scsi/devices/9:0:0:0/scsi_generic/.hidden", "") // dot entries skipped
	tr.dir("bus/scsi/devices/9:0:0:0/scsi_generic/sg9")
	tr.node("sg9", 21, 9)
	return tr
}

func TestSCSIGeneric(t *testing.T) {
	tr := scsiHost(t)
	sg := func(name string, minor uint32) Device {
		return Device{Path: filepath.Join(tr.root.Dev, name), Major: 21, Minor: minor, Char: true}
	}
	tests := []struct {
		name        string
		adapter     string
		bus, target uint
		unit        uint64
		want        Device
		wantErr     error
	}{
		{name: "found via link with dev attribute", adapter: "scsi_host0", want: sg("sg0", 0)},
		{name: "found without dev attribute", adapter: "scsi_host2", target: 1, unit: 3, want: sg("sg5", 5)},
		{name: "64-bit unit", adapter: "scsi_host1", unit: 1<<64 - 1, want: sg("sg12", 12)},
		{name: "dot entries skipped", adapter: "scsi_host9", want: sg("sg9", 9)},
		{name: "no such device", adapter: "scsi_host0", unit: 1, wantErr: ErrNotFound},
		{name: "no such host", adapter: "scsi_host42", wantErr: ErrNotFound},
		{name: "sg driver not loaded", adapter: "scsi_host3", wantErr: ErrNotFound},
		{name: "disk without scsi_generic", adapter: "scsi_host8", wantErr: ErrNotFound},
		{name: "two sg entries", adapter: "scsi_host4", wantErr: ErrAmbiguous},
		{name: "entry not sgN", adapter: "scsi_host5", wantErr: ErrMalformed},
		{name: "entry with leading zero", adapter: "scsi_host7", wantErr: ErrMalformed},
		{name: "dev attribute disagrees", adapter: "scsi_host6", wantErr: ErrMalformed},
		{name: "malicious adapter traversal", adapter: "scsi_host0/../../../../etc", wantErr: ErrInvalid},
		{name: "malicious adapter colon", adapter: "scsi_host0:0:0:0/..", wantErr: ErrInvalid},
		{name: "adapter prefix before", adapter: "../scsi_host0", wantErr: ErrInvalid},
		{name: "adapter octal like libvirt base 0", adapter: "scsi_host010", wantErr: ErrInvalid},
		{name: "adapter hex", adapter: "scsi_host0x1", wantErr: ErrInvalid},
		{name: "adapter negative", adapter: "scsi_host-1", wantErr: ErrInvalid},
		{name: "adapter without number", adapter: "scsi_host", wantErr: ErrInvalid},
		{name: "adapter with blank", adapter: "scsi_host 0", wantErr: ErrInvalid},
		{name: "adapter with newline", adapter: "scsi_host0\n", wantErr: ErrInvalid},
		{name: "adapter with NUL", adapter: "scsi_host0\x00", wantErr: ErrInvalid},
		{name: "adapter too big", adapter: "scsi_host99999999999", wantErr: ErrInvalid},
		{name: "empty adapter", adapter: "", wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tr.root.SCSIGeneric(tc.adapter, tc.bus, tc.target, tc.unit)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("SCSIGeneric(%q, %d, %d, %d) = %v, %v; want error %v", tc.adapter, tc.bus, tc.target, tc.unit, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("SCSIGeneric(%q, %d, %d, %d) = %v", tc.adapter, tc.bus, tc.target, tc.unit, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SCSIGeneric(%q, %d, %d, %d) mismatch (-want +got):\n%s", tc.adapter, tc.bus, tc.target, tc.unit, diff)
			}
			tr.checkNode(got)
		})
	}
}
