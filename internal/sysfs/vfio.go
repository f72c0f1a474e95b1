package sysfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PCIGroup finds the VFIO group node QEMU opens for a PCI hostdev: the
// device's <Sys>/bus/pci/devices/<addr>/iommu_group links to
// .../iommu_groups/N, and the node is <Dev>/vfio/N.
//
// addr is "DDDD:BB:SS.F" in hex (domain 4 to 8 digits, slot <= 1f,
// function <= 7), any case; it is reformatted the way the kernel names
// devices before it is used, so only a well-formed address reaches a path.
//
// The VFIO major number is allocated at boot, so it is read from
// <Sys>/class/vfio/N/dev, which exists only while some device of the group
// is bound to vfio-pci. libvirt binds managed devices before it runs the
// prepare hook, so a missing entry is reported as ErrNotFound ("not bound to
// vfio-pci?") rather than guessed. The returned Device carries that number
// so the owner package can check the node it opens.
func (r Root) PCIGroup(addr string) (Device, error) {
	canon, err := parsePCIAddr(addr)
	if err != nil {
		return Device{}, fmt.Errorf("pci device: %w", err)
	}
	what := "pci device " + canon
	dev, err := r.vfioGroup(r.sys("bus", "pci", "devices", canon))
	if err != nil {
		return Device{}, fmt.Errorf("%s: %w", what, err)
	}
	return dev, nil
}

// MdevGroup finds the VFIO group node of a mediated device (<hostdev
// type='mdev'>): <Sys>/bus/mdev/devices/<uuid>/iommu_group, then as
// PCIGroup. uuid is parsed the way libvirt's virUUIDParse does (32 hex
// digits, any '-' or ' ' between digit pairs, surrounding blanks) and
// used in its canonical lower-case 8-4-4-4-12 form, which is how libvirt
// and the kernel name mdevs.
func (r Root) MdevGroup(uuid string) (Device, error) {
	canon, err := parseUUID(uuid)
	if err != nil {
		return Device{}, fmt.Errorf("mdev: %w", err)
	}
	what := "mdev " + canon
	dev, err := r.vfioGroup(r.sys("bus", "mdev", "devices", canon))
	if err != nil {
		return Device{}, fmt.Errorf("%s: %w", what, err)
	}
	return dev, nil
}

// vfioGroup resolves devDir/iommu_group to its group number and returns
// the group's node.
func (r Root) vfioGroup(devDir string) (Device, error) {
	if _, err := os.Lstat(devDir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Device{}, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return Device{}, err
	}
	link := filepath.Join(devDir, "iommu_group")
	target, err := os.Readlink(link)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Device{}, fmt.Errorf("%w: no iommu group (IOMMU disabled?): %w", ErrNotFound, err)
		}
		return Device{}, fmt.Errorf("read iommu group link: %w", err)
	}
	// Only the last component is used, and only if it is a group
	// number, so a link pointing anywhere else cannot steer the lookup.
	group := filepath.Base(target)
	n, err := parseGroupNumber(group)
	if err != nil {
		return Device{}, fmt.Errorf("%s -> %s: %w", link, target, err)
	}
	name := strconv.FormatUint(uint64(n), 10)
	classDir := r.sys("class", "vfio", name)
	major, minor, ok, err := readDevNumber(classDir)
	if err != nil {
		return Device{}, fmt.Errorf("iommu group %s: %w", name, err)
	}
	if !ok {
		return Device{}, fmt.Errorf("iommu group %s: %w: %s/dev is missing (device not bound to vfio-pci?)", name, ErrNotFound, classDir)
	}
	return Device{Path: r.dev("vfio", name), Major: major, Minor: minor, Char: true}, nil
}

// parseGroupNumber parses an iommu group directory name: plain decimal.
func parseGroupNumber(s string) (uint32, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || !allDigits(s) {
		return 0, fmt.Errorf("%w: %q is not an iommu group number", ErrMalformed, s)
	}
	n, err := parseDec(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not an iommu group number", ErrMalformed, s)
	}
	return n, nil
}

// parsePCIAddr parses a PCI address "DDDD:BB:SS.F" (hex, any case) and
// returns it as the kernel names the sysfs directory: "%04x:%02x:%02x.%x".
func parsePCIAddr(s string) (string, error) {
	bad := func() (string, error) {
		return "", fmt.Errorf("%w: %q is not a pci address DDDD:BB:SS.F", ErrInvalid, s)
	}
	rest, fn, ok := strings.Cut(s, ".")
	if !ok {
		return bad()
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 {
		return bad()
	}
	domain, ok1 := hexField(parts[0], 4, 8)
	// Longer than 4 digits only without leading zeros: one spelling per
	// address, as the kernel names them (%04x).
	if len(parts[0]) > 4 && parts[0][0] == '0' {
		return bad()
	}
	bus, ok2 := hexField(parts[1], 2, 2)
	slot, ok3 := hexField(parts[2], 2, 2)
	function, ok4 := hexField(fn, 1, 1)
	if !ok1 || !ok2 || !ok3 || !ok4 || slot > 0x1f || function > 7 {
		return bad()
	}
	return fmt.Sprintf("%04x:%02x:%02x.%x", domain, bus, slot, function), nil
}

// hexField parses between minLen and maxLen hex digits.
func hexField(s string, minLen, maxLen int) (uint64, bool) {
	if len(s) < minLen || len(s) > maxLen || !allHex(s) {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

// parseUUID parses a UUID as libvirt's virUUIDParse does and returns the
// canonical lower-case form.
func parseUUID(s string) (string, error) {
	bad := func() (string, error) {
		return "", fmt.Errorf("%w: %q is not a uuid", ErrInvalid, s)
	}
	const blanks = " \t\n\v\f\r" // g_ascii_isspace
	cur := strings.TrimLeft(s, blanks)
	var raw [16]byte
	for i := 0; i < 16; i++ {
		// libvirt skips any run of '-' and ' ' between digit pairs.
		cur = strings.TrimLeft(cur, "- ")
		if len(cur) < 2 {
			return bad()
		}
		hi, lo := hexVal(cur[0]), hexVal(cur[1])
		if hi < 0 || lo < 0 {
			return bad()
		}
		raw[i] = byte(hi<<4 | lo)
		cur = cur[2:]
	}
	if strings.TrimRight(cur, blanks) != "" {
		return bad()
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", raw[0:4], raw[4:6], raw[6:8], raw[8:10], raw[10:16]), nil
}
