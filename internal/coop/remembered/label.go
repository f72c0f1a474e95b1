package remembered

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// The xattrs libvirt's DAC driver keeps on a file it labelled.
const (
	XattrDAC       = "trusted.libvirt.security.dac"
	XattrRefDAC    = "trusted.libvirt.security.ref_dac"
	XattrTimestamp = "trusted.libvirt.security.timestamp_dac"
)

// Xattrs are all of them, in the order libvirt removes them.
var Xattrs = []string{XattrDAC, XattrRefDAC, XattrTimestamp}

// ErrBadLabel is wrapped when libvirt's remembered owner cannot be parsed.
var ErrBadLabel = errors.New("not a +UID:+GID label")

// ParseLabel parses libvirt's remembered DAC label, "+UID:+GID" (libvirt
// writes the plus signs; a bare number is accepted too).
func ParseLabel(s string) (owner.UIDGID, error) {
	u, g, ok := strings.Cut(strings.TrimRight(s, "\x00"), ":")
	if !ok {
		return owner.UIDGID{}, fmt.Errorf("%q: %w", s, ErrBadLabel)
	}
	uid, err1 := strconv.ParseUint(strings.TrimPrefix(u, "+"), 10, 32)
	gid, err2 := strconv.ParseUint(strings.TrimPrefix(g, "+"), 10, 32)
	if err1 != nil || err2 != nil || u == "" || g == "" || u == "+" || g == "+" {
		return owner.UIDGID{}, fmt.Errorf("%q: %w", s, ErrBadLabel)
	}
	return owner.UIDGID{UID: uint32(uid), GID: uint32(gid)}, nil
}

// Label reads the owner libvirt remembered for the inode at path, a path
// that is followed (a descriptor's /proc/self/fd link, so that the inode
// read is the one the caller holds). ok is false when libvirt remembers
// none: no label, no outstanding labelling (ref_dac), a value that does
// not parse, or one libvirt itself would discard as a previous boot's
// (timestamp_dac is not bootTime, Unix seconds): libvirt writes the host
// boot time there, "%llu" or, in older releases, "HOSTUUID-%llu".
func Label(path string, bootTime int64) (o owner.UIDGID, ok bool) {
	get := func(name string) (string, bool) {
		var buf [128]byte
		n, err := unix.Getxattr(path, name, buf[:])
		if err != nil {
			return "", false
		}
		return strings.TrimRight(string(buf[:n]), "\x00"), true
	}
	refs, ok := get(XattrRefDAC)
	if n, err := strconv.ParseUint(refs, 10, 32); !ok || err != nil || n == 0 {
		return owner.UIDGID{}, false
	}
	ts, ok := get(XattrTimestamp)
	if !ok || !sameBoot(ts, bootTime) {
		return owner.UIDGID{}, false
	}
	label, ok := get(XattrDAC)
	if !ok {
		return owner.UIDGID{}, false
	}
	o, err := ParseLabel(label)
	return o, err == nil
}

// bootSlack is how far libvirt's boot time may be from the kernel's:
// libvirt derives it from utmp or from /proc/uptime, a second or so off.
// A previous boot's differs by that boot's whole uptime.
const bootSlack = 5

func sameBoot(ts string, bootTime int64) bool {
	if i := strings.LastIndexByte(ts, '-'); i >= 0 {
		ts = ts[i+1:]
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || bootTime <= 0 {
		return false
	}
	d := t - bootTime
	return d >= -bootSlack && d <= bootSlack
}

// BootTime is the kernel's boot time in Unix seconds (btime in
// /proc/stat), 0 when unknown.
func BootTime() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			t, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return t
			}
		}
	}
	return 0
}
