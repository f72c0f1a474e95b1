package sysfs

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The parsers below read bytes from sysfs or from a domain XML. Each
// target checks that they never panic, that every failure is one of the
// package's sentinels, and that whatever they accept formats back to a
// value that is safe to put in a path and parses to the same thing.

func FuzzParseDevNumber(f *testing.F) {
	for _, s := range []string{"189:3\n", "21:0", "243:1", "4095:1048575", "4096:0", "1:1048576", ":", "1:", ":1", "1:2:3", "-1:2", "+1:2", " 8:16 ", "0x10:1", "99999999999:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		major, minor, err := parseDevNumber(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parseDevNumber(%q) error %v is not ErrMalformed", s, err)
			}
			return
		}
		if major > maxMajor || minor > maxMinor {
			t.Fatalf("parseDevNumber(%q) = %d:%d, outside dev_t", s, major, minor)
		}
		again := fmt.Sprintf("%d:%d", major, minor)
		if m2, n2, err := parseDevNumber(again); err != nil || m2 != major || n2 != minor {
			t.Fatalf("parseDevNumber(%q) = %d:%d, but %q parses to %d:%d, %v", s, major, minor, again, m2, n2, err)
		}
	})
}

func FuzzParseSysfsNumber(f *testing.F) {
	for _, s := range []string{"046d\n", "C52B", "0", "ffff", "10000", "00000001", "0x1", "-1", "1_0", "", " 12 ", "4294967295", "4294967296"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := parseHex16(s); err == nil {
			if w, err2 := strconv.ParseUint(strings.TrimSpace(s), 16, 16); err2 != nil || uint16(w) != v {
				t.Fatalf("parseHex16(%q) = %#x, strconv says %#x, %v", s, v, w, err2)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("parseHex16(%q) error %v is not ErrMalformed", s, err)
		}
		if v, err := parseDec(s); err == nil {
			if got := strconv.FormatUint(uint64(v), 10); strings.TrimLeft(strings.TrimSpace(s), "0") != strings.TrimLeft(got, "0") {
				t.Fatalf("parseDec(%q) = %d", s, v)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("parseDec(%q) error %v is not ErrMalformed", s, err)
		}
	})
}

var canonicalPCI = regexp.MustCompile(`^[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$`)

func FuzzParsePCIAddr(f *testing.F) {
	for _, s := range []string{"0000:06:12.5", "0000:00:1A.0", "10000:01:00.0", "0000:06:20.0", "0000:06:12.8", "../0000:06:12.5", "0000:06:12.5/..", "06:12.5", "ffffffff:ff:1f.7", "fffffffff:ff:1f.7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		canon, err := parsePCIAddr(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("parsePCIAddr(%q) error %v is not ErrInvalid", s, err)
			}
			return
		}
		if !canonicalPCI.MatchString(canon) {
			t.Fatalf("parsePCIAddr(%q) = %q, not canonical", s, canon)
		}
		if !strings.EqualFold(canon, s) {
			t.Fatalf("parsePCIAddr(%q) = %q, not the same address", s, canon)
		}
		if again, err := parsePCIAddr(canon); err != nil || again != canon {
			t.Fatalf("parsePCIAddr(%q) = %q, %v; not idempotent", canon, again, err)
		}
	})
}

var canonicalUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func FuzzParseUUID(f *testing.F) {
	for _, s := range []string{mdevUUID, strings.ToUpper(mdevUUID), "c2177883f1bb47f0914d32a22e3a8804", " " + mdevUUID + "\n", "--c2 17", "../../etc", mdevUUID + "/..", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		canon, err := parseUUID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("parseUUID(%q) error %v is not ErrInvalid", s, err)
			}
			return
		}
		if !canonicalUUID.MatchString(canon) {
			t.Fatalf("parseUUID(%q) = %q, not canonical", s, canon)
		}
		hexOnly := func(x string) string {
			return strings.Map(func(r rune) rune {
				if hexVal(byte(r)) >= 0 && r < 0x80 {
					return r
				}
				return -1
			}, strings.ToLower(x))
		}
		if hexOnly(s) != hexOnly(canon) {
			t.Fatalf("parseUUID(%q) = %q, different digits", s, canon)
		}
		if again, err := parseUUID(canon); err != nil || again != canon {
			t.Fatalf("parseUUID(%q) = %q, %v; not idempotent", canon, again, err)
		}
	})
}

func FuzzParseSCSINames(f *testing.F) {
	for _, s := range []string{"scsi_host0", "scsi_host12", "scsi_host010", "scsi_host0x1", "scsi_host-1", "scsi_host", "sg0", "sg17", "sg01", "sg", "sg1048576", "scsi_host0/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseSCSIAdapter(s); err == nil {
			if want := "scsi_host" + strconv.FormatUint(uint64(n), 10); want != s {
				t.Fatalf("parseSCSIAdapter(%q) = %d, which is %q", s, n, want)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("parseSCSIAdapter(%q) error %v is not ErrInvalid", s, err)
		}
		if n, err := parseSGName(s); err == nil {
			if want := "sg" + strconv.FormatUint(uint64(n), 10); want != s || n > maxMinor {
				t.Fatalf("parseSGName(%q) = %d, which is %q", s, n, want)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("parseSGName(%q) error %v is not ErrMalformed", s, err)
		}
		if n, err := parseGroupNumber(s); err == nil {
			if want := strconv.FormatUint(uint64(n), 10); want != s {
				t.Fatalf("parseGroupNumber(%q) = %d, which is %q", s, n, want)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("parseGroupNumber(%q) error %v is not ErrMalformed", s, err)
		}
	})
}
