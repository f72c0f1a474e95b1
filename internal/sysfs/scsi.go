package sysfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SCSIGeneric finds the SCSI generic node (/dev/sgN) of a <hostdev
// type='scsi'> with a host adapter, as libvirt's virSCSIDeviceGetSgName
// does: the directory <Sys>/bus/scsi/devices/H:B:T:U/scsi_generic holds
// one entry, sgN, and the node is <Dev>/sgN, a character device with major
// 21 and minor N (checked against sgN/dev when sysfs has it).
//
// adapter is the XML's adapter name, "scsi_hostH". libvirt parses H with
// strtoul base 0, which would read "scsi_host010" as host 8; this package
// accepts only plain decimal H (no sign, no leading zeros) and reports
// anything else as ErrInvalid, so it never picks a different host than
// libvirt does. An sg entry whose name is not "sg" and digits is
// ErrMalformed; more than one is ErrAmbiguous (libvirt takes the first).
func (r Root) SCSIGeneric(adapter string, bus, target uint, unit uint64) (Device, error) {
	host, err := parseSCSIAdapter(adapter)
	if err != nil {
		return Device{}, fmt.Errorf("scsi hostdev: %w", err)
	}
	name := fmt.Sprintf("%d:%d:%d:%d", host, bus, target, unit)
	what := "scsi device " + name
	dir := r.sys("bus", "scsi", "devices", name, "scsi_generic")
	des, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Device{}, fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
		}
		return Device{}, fmt.Errorf("%s: %w", what, err)
	}
	var sgs []string
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), ".") {
			sgs = append(sgs, de.Name())
		}
	}
	switch len(sgs) {
	case 0:
		return Device{}, fmt.Errorf("%s: %w: %s is empty (sg driver not loaded?)", what, ErrNotFound, dir)
	case 1:
	default:
		return Device{}, fmt.Errorf("%s: %w: %s holds %s", what, ErrAmbiguous, dir, strings.Join(sgs, ", "))
	}
	sg := sgs[0]
	minor, err := parseSGName(sg)
	if err != nil {
		return Device{}, fmt.Errorf("%s: entry of %s: %w", what, dir, err)
	}
	if err := checkDevNumber(filepath.Join(dir, sg), scsiGenericMajor, minor); err != nil {
		return Device{}, fmt.Errorf("%s: %w", what, err)
	}
	return Device{Path: r.dev(sg), Major: scsiGenericMajor, Minor: minor, Char: true}, nil
}

// parseSCSIAdapter parses "scsi_hostN" with N plain decimal.
func parseSCSIAdapter(adapter string) (uint32, error) {
	digits, ok := strings.CutPrefix(adapter, "scsi_host")
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') || !allDigits(digits) {
		return 0, fmt.Errorf("%w: adapter %q is not scsi_host<N>", ErrInvalid, adapter)
	}
	n, err := parseDec(digits)
	if err != nil {
		return 0, fmt.Errorf("%w: adapter %q is not scsi_host<N>", ErrInvalid, adapter)
	}
	return n, nil
}

// parseSGName parses a scsi_generic entry name "sgN" and returns N, the
// node's minor number.
func parseSGName(name string) (uint32, error) {
	digits, ok := strings.CutPrefix(name, "sg")
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') || !allDigits(digits) {
		return 0, fmt.Errorf("%w: %q is not sg<N>", ErrMalformed, name)
	}
	n, err := parseDec(digits)
	if err != nil || n > maxMinor {
		return 0, fmt.Errorf("%w: %q is not sg<N>", ErrMalformed, name)
	}
	return n, nil
}
