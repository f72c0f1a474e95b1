package sysfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// usbEntry is one USB device (not interface) found in sysfs.
type usbEntry struct {
	name            string // directory name under bus/usb/devices, e.g. "1-2.3"
	vendor, product uint16
	busnum, devnum  uint32
	major, minor    uint32
	hasDevAttribute bool
}

func (e usbEntry) String() string {
	return fmt.Sprintf("bus %d device %d (%04x:%04x, %s)", e.busnum, e.devnum, e.vendor, e.product, e.name)
}

// USB finds the node of a USB host device the way libvirt's
// virHostdevFindUSBDevice does:
//
//   - vendor set, bus/device unset: the one device with that idVendor and
//     idProduct (product 0 matches only product 0, as in libvirt). Several
//     such devices are ErrAmbiguous, because libvirt refuses them too
//     ("use <address> to specify one").
//   - vendor and bus/device set: the device must have both the ids and the
//     address. libvirt only looks elsewhere when it picked the address
//     itself on an earlier start (autoAddress, kept in its status XML);
//     the hook cannot know that, so a device that moved is ErrNotFound and
//     the message says where the ids were seen.
//   - bus/device only: the device at that address, whatever its ids.
//
// Devices are the entries of <Sys>/bus/usb/devices other than interfaces
// (names with ':'), identified by their idVendor, idProduct, busnum and
// devnum attributes. The node is <Dev>/bus/usb/BBB/DDD (zero padded to
// three digits, as libvirt and udev name it), a character device with
// major 189 and minor (busnum-1)*128 + devnum-1; when the sysfs entry has
// a dev attribute it must agree.
func (r Root) USB(bus, device uint, vendor, product uint16) (Device, error) {
	what := describeUSB(bus, device, vendor, product)
	switch {
	case vendor == 0 && product != 0:
		return Device{}, fmt.Errorf("%s: %w: product id without vendor id", what, ErrInvalid)
	case (bus == 0) != (device == 0):
		return Device{}, fmt.Errorf("%s: %w: address needs both bus and device", what, ErrInvalid)
	case vendor == 0 && bus == 0:
		return Device{}, fmt.Errorf("%s: %w: neither vendor/product nor address given", what, ErrInvalid)
	case bus > 1<<13 || device > 128:
		// Beyond what the kernel can number (minor is 20 bits, devnum <= 127).
		return Device{}, fmt.Errorf("%s: %w: address out of range", what, ErrInvalid)
	}

	entries, err := r.usbDevices()
	if err != nil {
		return Device{}, fmt.Errorf("%s: %w", what, err)
	}
	atAddress := func(e usbEntry) bool { return e.busnum == uint32(bus) && e.devnum == uint32(device) }
	hasIDs := func(e usbEntry) bool { return e.vendor == vendor && e.product == product }

	var matches, elsewhere []usbEntry
	for _, e := range entries {
		switch {
		case vendor == 0:
			if atAddress(e) {
				matches = append(matches, e)
			}
		case bus == 0:
			if hasIDs(e) {
				matches = append(matches, e)
			}
		case hasIDs(e) && atAddress(e):
			matches = append(matches, e)
		case hasIDs(e):
			elsewhere = append(elsewhere, e)
		}
	}

	switch len(matches) {
	case 0:
		if len(elsewhere) > 0 {
			return Device{}, fmt.Errorf("%s: %w at that address; these ids are at %s", what, ErrNotFound, joinEntries(elsewhere))
		}
		return Device{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	case 1:
	default:
		hint := ""
		if bus == 0 {
			hint = "; add an <address> to pick one"
		}
		return Device{}, fmt.Errorf("%s: %w: %s%s", what, ErrAmbiguous, joinEntries(matches), hint)
	}

	e := matches[0]
	minor := (e.busnum-1)*128 + e.devnum - 1
	if e.hasDevAttribute && (e.major != usbDeviceMajor || e.minor != minor) {
		return Device{}, fmt.Errorf("%s: %s: dev is %d:%d, want %d:%d: %w",
			what, e.name, e.major, e.minor, usbDeviceMajor, minor, ErrMalformed)
	}
	return Device{
		Path:  r.dev("bus", "usb", fmt.Sprintf("%03d", e.busnum), fmt.Sprintf("%03d", e.devnum)),
		Major: usbDeviceMajor,
		Minor: minor,
		Char:  true,
	}, nil
}

func describeUSB(bus, device uint, vendor, product uint16) string {
	var parts []string
	if vendor != 0 || product != 0 {
		parts = append(parts, fmt.Sprintf("%04x:%04x", vendor, product))
	}
	if bus != 0 || device != 0 {
		parts = append(parts, fmt.Sprintf("bus %d device %d", bus, device))
	}
	return "usb device " + strings.Join(parts, " at ")
}

func joinEntries(es []usbEntry) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.String()
	}
	return strings.Join(s, ", ")
}

// usbDevices lists the USB devices in <Sys>/bus/usb/devices, sorted by
// name so errors list them in a stable order. An entry that vanishes while
// it is read (unplugged) or lacks the attributes of a device is skipped; a
// value that is present but unparsable is an error, as in libvirt, because
// the host is then not what the lookup expects.
func (r Root) usbDevices() ([]usbEntry, error) {
	dir := r.sys("bus", "usb", "devices")
	des, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("list usb devices: %w: %w", ErrNotFound, err)
		}
		return nil, fmt.Errorf("list usb devices: %w", err)
	}
	var out []usbEntry
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") || strings.Contains(name, ":") {
			continue // interfaces ("1-2:1.0") have no device node
		}
		e, ok, err := readUSBEntry(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if ok {
			e.name = name
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b usbEntry) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func readUSBEntry(dir string) (e usbEntry, ok bool, err error) {
	read := func(attr string, parse func(string) error) error {
		p := filepath.Join(dir, attr)
		s, err := readValue(p)
		if err != nil {
			return err
		}
		if err := parse(s); err != nil {
			return fmt.Errorf("parse %s: %w", p, err)
		}
		return nil
	}
	err = errors.Join(
		read("idVendor", func(s string) (err error) { e.vendor, err = parseHex16(s); return }),
		read("idProduct", func(s string) (err error) { e.product, err = parseHex16(s); return }),
		read("busnum", func(s string) (err error) { e.busnum, err = parseDec(s); return }),
		read("devnum", func(s string) (err error) { e.devnum, err = parseDec(s); return }),
	)
	if errors.Is(err, os.ErrNotExist) {
		return usbEntry{}, false, nil
	}
	if err != nil {
		return usbEntry{}, false, err
	}
	// devnum is 1..127 on a real bus; the minor formula needs both >= 1.
	if e.busnum < 1 || e.busnum > 1<<13 || e.devnum < 1 || e.devnum > 128 {
		return usbEntry{}, false, fmt.Errorf("%s: %w: bus %d device %d out of range", dir, ErrMalformed, e.busnum, e.devnum)
	}
	e.major, e.minor, e.hasDevAttribute, err = readDevNumber(dir)
	if err != nil {
		return usbEntry{}, false, err
	}
	return e, true, nil
}
