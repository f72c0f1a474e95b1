package sysfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// usbHost is a small machine: a root hub, a Logitech receiver on each of
// two buses (same ids), a SanDisk stick and a YubiKey, plus an interface
// entry that must be ignored.
func usbHost(t *testing.T) *tree {
	tr := newTree(t)
	tr.usb("usb1", 1, 1, "1d6b", "0002", "auto")
	tr.usb("1-1", 1, 3, "046d", "c52b", "auto")
	tr.usb("1-2", 1, 4, "0781", "5581", "")
	tr.usb("2-1", 2, 5, "046D", "C52B", "auto") // upper case: kernel prints lower, parse either
	tr.usb("2-3", 2, 7, "1050", "0407", "auto")
	// Interfaces have no ids or device number and are skipped by name.
	tr.file("devices/pci0000:00/0000:00:14.0/1-1/1-1:1.0/bInterfaceClass", "03")
	tr.link("bus/usb/devices/1-1:1.0", "../../../devices/pci0000:00/0000:00:14.0/1-1/1-1:1.0")
	return tr
}

func TestUSB(t *testing.T) {
	tr := usbHost(t)
	usbNode := func(bus, dev string, minor uint32) Device {
		return Device{Path: filepath.Join(tr.root.Dev, "bus/usb", bus, dev), Major: 189, Minor: minor, Char: true}
	}
	tests := []struct {
		name            string
		bus, device     uint
		vendor, product uint16
		want            Device
		wantErr         error
		wantMsg         []string // substrings of the error message
	}{
		{name: "by address", bus: 1, device: 4, want: usbNode("001", "004", 3)},
		{name: "by address second bus", bus: 2, device: 7, want: usbNode("002", "007", 128+6)},
		{name: "by address root hub", bus: 1, device: 1, want: usbNode("001", "001", 0)},
		{name: "by vendor product", vendor: 0x0781, product: 0x5581, want: usbNode("001", "004", 3)},
		{name: "by vendor product with dev attribute", vendor: 0x1050, product: 0x0407, want: usbNode("002", "007", 134)},
		{name: "both", bus: 1, device: 4, vendor: 0x0781, product: 0x5581, want: usbNode("001", "004", 3)},
		{name: "both picks one of duplicates", bus: 2, device: 5, vendor: 0x046d, product: 0xc52b, want: usbNode("002", "005", 128+4)},
		{
			name: "ambiguous", vendor: 0x046d, product: 0xc52b, wantErr: ErrAmbiguous,
			wantMsg: []string{"bus 1 device 3 (046d:c52b, 1-1)", "bus 2 device 5 (046d:c52b, 2-1)", "<address>"},
		},
		{name: "not found by ids", vendor: 0xdead, product: 0xbeef, wantErr: ErrNotFound},
		{name: "not found by address", bus: 3, device: 1, wantErr: ErrNotFound},
		{name: "product 0 matches only product 0", vendor: 0x0781, wantErr: ErrNotFound},
		{
			name: "address product mismatch", bus: 1, device: 3, vendor: 0x0781, product: 0x5581,
			wantErr: ErrNotFound, wantMsg: []string{"these ids are at bus 1 device 4"},
		},
		{name: "address of other device without ids elsewhere", bus: 1, device: 3, vendor: 0xdead, product: 0xbeef, wantErr: ErrNotFound},
		{name: "bus without device", bus: 1, device: 0, wantErr: ErrInvalid},
		{name: "product without vendor", product: 0x5581, wantErr: ErrInvalid},
		{name: "device without bus", device: 4, wantErr: ErrInvalid},
		{name: "nothing", wantErr: ErrInvalid},
		{name: "device out of range", bus: 1, device: 300, wantErr: ErrInvalid},
		{name: "bus out of range", bus: 1 << 20, device: 1, wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tr.root.USB(tc.bus, tc.device, tc.vendor, tc.product)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("USB(%d, %d, %04x, %04x) = %v, %v; want error %v", tc.bus, tc.device, tc.vendor, tc.product, got, err, tc.wantErr)
				}
				for _, m := range tc.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not mention %q", err, m)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("USB(%d, %d, %04x, %04x) = %v", tc.bus, tc.device, tc.vendor, tc.product, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("USB(%d, %d, %04x, %04x) mismatch (-want +got):\n%s", tc.bus, tc.device, tc.vendor, tc.product, diff)
			}
			tr.checkNode(got)
		})
	}
}

// TestUSBNodes checks, with real device nodes, that the path and number
// a lookup returns are the ones of the node udev would have made.
func TestUSBNodes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mknod fake /dev/bus/usb nodes")
	}
	tr := newTree(t)
	tr.usb("3-4.2", 3, 17, "abcd", "1234", "auto")
	tr.usb("9-1", 9, 127, "abcd", "5678", "")
	for _, tc := range []struct {
		name            string
		vendor, product uint16
		minor           uint32
	}{
		{"bus 3 device 17", 0xabcd, 0x1234, 2*128 + 16},
		{"bus 9 device 127", 0xabcd, 0x5678, 8*128 + 126},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tr.root.USB(0, 0, tc.vendor, tc.product)
			if err != nil {
				t.Fatal(err)
			}
			if d.Minor != tc.minor || d.Major != 189 || !d.Char {
				t.Errorf("USB(%04x:%04x) = %v, want char 189:%d", tc.vendor, tc.product, d, tc.minor)
			}
			tr.checkNode(d)
		})
	}
}

func TestUSBBrokenSysfs(t *testing.T) {
	tests := []struct {
		name    string
		build   func(tr *tree)
		wantErr error
	}{
		{
			name:    "no usb bus",
			build:   func(tr *tree) {}, // newTree makes an empty sysfs
			wantErr: ErrNotFound,
		},
		{
			name:    "dev attribute disagrees",
			build:   func(tr *tree) { tr.usb("1-1", 1, 2, "0781", "5581", "189:7") },
			wantErr: ErrMalformed,
		},
		{
			name:    "dev attribute garbage",
			build:   func(tr *tree) { tr.usb("1-1", 1, 2, "0781", "5581", "189") },
			wantErr: ErrMalformed,
		},
		{
			name:    "vendor not hex",
			build:   func(tr *tree) { tr.usb("1-1", 1, 2, "zzzz", "5581", "") },
			wantErr: ErrMalformed,
		},
		{
			name:    "vendor too wide",
			build:   func(tr *tree) { tr.usb("1-1", 1, 2, "10781", "5581", "") },
			wantErr: ErrMalformed,
		},
		{
			name:    "devnum zero",
			build:   func(tr *tree) { tr.usb("1-1", 1, 0, "0781", "5581", "") },
			wantErr: ErrMalformed,
		},
		{
			name: "devnum huge",
			build: func(tr *tree) {
				tr.usb("1-1", 1, 2, "0781", "5581", "")
				tr.file("devices/pci0000:00/0000:00:14.0/1-1/devnum", strings.Repeat("9", 2000))
			},
			wantErr: ErrMalformed,
		},
		{
			name: "entry without attributes is skipped",
			build: func(tr *tree) {
				tr.dir("devices/odd")
				tr.link("bus/usb/devices/odd", "../../../devices/odd")
			},
			wantErr: ErrNotFound,
		},
		{
			name: "attribute that is a symlink is refused",
			build: func(tr *tree) {
				tr.usb("1-1", 1, 2, "0781", "5581", "")
				p := filepath.Join(tr.root.Sys, "devices/pci0000:00/0000:00:14.0/1-1/idProduct")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				tr.file("elsewhere", "5581")
				tr.link("devices/pci0000:00/0000:00:14.0/1-1/idProduct", "../../../../elsewhere")
			},
			wantErr: nil, // any error: ELOOP is neither sentinel
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			tc.build(tr)
			got, err := tr.root.USB(0, 0, 0x0781, 0x5581)
			if err == nil {
				t.Fatalf("USB(0781:5581) = %v, want error", got)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("USB(0781:5581) = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestZeroRootIsHost(t *testing.T) {
	var r Root
	if got, want := r.sys("bus", "usb"), "/sys/bus/usb"; got != want {
		t.Errorf("Root{}.sys = %q, want %q", got, want)
	}
	if got, want := r.dev("sg0"), "/dev/sg0"; got != want {
		t.Errorf("Root{}.dev = %q, want %q", got, want)
	}
}
