package sysfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Sentinel errors, matched with errors.Is. Errors returned by this package
// wrap one of them whenever the cause is one of these conditions.
var (
	// ErrNotFound means no device in sysfs matches the request.
	ErrNotFound = errors.New("device not found")
	// ErrAmbiguous means several devices match and nothing says which
	// one is meant; the error message lists them.
	ErrAmbiguous = errors.New("several devices match")
	// ErrInvalid means the request itself is malformed (an address or
	// UUID that does not match its strict pattern, a missing field).
	ErrInvalid = errors.New("invalid device selector")
	// ErrMalformed means sysfs holds a value this package cannot parse
	// (or one that contradicts another value), so the host is not what
	// the lookup expects and guessing would risk chowning the wrong node.
	ErrMalformed = errors.New("malformed sysfs value")
)

// Root holds the mount points the lookups read. The zero value means the
// host's: an empty Sys is "/sys", an empty Dev is "/dev". Tests point both
// at fake trees.
type Root struct {
	Sys string
	Dev string
}

// Host is the root of the running system.
var Host = Root{Sys: "/sys", Dev: "/dev"}

// Device is a device node the hook will chown, with the device number the
// node must have. Path is under Root.Dev; it has not been checked to exist.
type Device struct {
	Path         string
	Major, Minor uint32
	// Char is true for a character device, false for a block device.
	Char bool
}

// String formats d for plans and logs, e.g. "/dev/bus/usb/001/003 (char 189:2)".
func (d Device) String() string {
	kind := "block"
	if d.Char {
		kind = "char"
	}
	return fmt.Sprintf("%s (%s %d:%d)", d.Path, kind, d.Major, d.Minor)
}

// Device numbers fixed by the kernel (Documentation/admin-guide/devices.txt).
const (
	usbDeviceMajor   = 189 // USB_DEVICE_MAJOR: /dev/bus/usb/BBB/DDD
	scsiGenericMajor = 21  // SCSI_GENERIC_MAJOR: /dev/sgN
)

// Linux dev_t limits: 12-bit major, 20-bit minor.
const (
	maxMajor = 1<<12 - 1
	maxMinor = 1<<20 - 1
)

// maxValueSize bounds every sysfs read. Sysfs attributes are at most a
// page; the values read here are a few bytes, so anything longer is not
// what it should be. libvirt uses 1024 for the same files.
const maxValueSize = 1024

func (r Root) sys(elem ...string) string {
	base := r.Sys
	if base == "" {
		base = Host.Sys
	}
	return filepath.Join(append([]string{base}, elem...)...)
}

func (r Root) dev(elem ...string) string {
	base := r.Dev
	if base == "" {
		base = Host.Dev
	}
	return filepath.Join(append([]string{base}, elem...)...)
}

// readValue reads a small sysfs attribute and trims surrounding white
// space. The last component must not be a symlink: attributes never are,
// and following one could read an arbitrary file.
func readValue(p string) (string, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	// A close error on a read-only descriptor says nothing about what
	// was read.
	defer func() { _ = f.Close() }()
	buf, err := io.ReadAll(io.LimitReader(f, maxValueSize+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	if len(buf) > maxValueSize {
		return "", fmt.Errorf("read %s: %w: longer than %d bytes", p, ErrMalformed, maxValueSize)
	}
	return strings.TrimSpace(string(buf)), nil
}

// parseHex16 parses a USB id file (idVendor, idProduct): hex digits, no
// prefix, at most 16 bits.
func parseHex16(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 8 || !allHex(s) {
		return 0, fmt.Errorf("%w: %q is not a 16-bit hex id", ErrMalformed, s)
	}
	v, err := strconv.ParseUint(s, 16, 16)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a 16-bit hex id", ErrMalformed, s)
	}
	return uint16(v), nil
}

// parseDec parses a small decimal sysfs number (busnum, devnum): digits
// only, no sign, at most 32 bits.
func parseDec(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 10 || !allDigits(s) {
		return 0, fmt.Errorf("%w: %q is not a decimal number", ErrMalformed, s)
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a decimal number", ErrMalformed, s)
	}
	return uint32(v), nil
}

// parseDevNumber parses a sysfs "dev" file: "major:minor" in decimal,
// within the kernel's dev_t limits.
func parseDevNumber(s string) (major, minor uint32, err error) {
	s = strings.TrimSpace(s)
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("%w: %q is not major:minor", ErrMalformed, s)
	}
	major, err = parseDec(a)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %q is not major:minor", ErrMalformed, s)
	}
	minor, err = parseDec(b)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %q is not major:minor", ErrMalformed, s)
	}
	if major > maxMajor || minor > maxMinor {
		return 0, 0, fmt.Errorf("%w: %q is outside the kernel's device number range", ErrMalformed, s)
	}
	return major, minor, nil
}

// readDevNumber reads the "dev" attribute of a sysfs device directory.
// ok is false when the device has no such attribute.
func readDevNumber(dir string) (major, minor uint32, ok bool, err error) {
	p := filepath.Join(dir, "dev")
	s, err := readValue(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	major, minor, err = parseDevNumber(s)
	if err != nil {
		return 0, 0, false, fmt.Errorf("parse %s: %w", p, err)
	}
	return major, minor, true, nil
}

// checkDevNumber cross-checks a computed device number against the
// kernel's "dev" attribute in dir, when there is one.
func checkDevNumber(dir string, major, minor uint32) error {
	gotMajor, gotMinor, ok, err := readDevNumber(dir)
	if err != nil || !ok {
		return err
	}
	if gotMajor != major || gotMinor != minor {
		return fmt.Errorf("%s/dev is %d:%d, want %d:%d: %w", dir, gotMajor, gotMinor, major, minor, ErrMalformed)
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if hexVal(s[i]) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
