package remembered

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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

// Owner is a uid and gid.
type Owner struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

func (o Owner) String() string { return fmt.Sprintf("%d:%d", o.UID, o.GID) }

// ParseLabel parses libvirt's remembered DAC label, "+UID:+GID" (libvirt
// writes the plus signs; a bare number is accepted too).
func ParseLabel(s string) (Owner, error) {
	u, g, ok := strings.Cut(strings.TrimRight(s, "\x00"), ":")
	if !ok {
		return Owner{}, fmt.Errorf("%q: %w", s, ErrBadLabel)
	}
	uid, err1 := strconv.ParseUint(strings.TrimPrefix(u, "+"), 10, 32)
	gid, err2 := strconv.ParseUint(strings.TrimPrefix(g, "+"), 10, 32)
	if err1 != nil || err2 != nil || u == "" || g == "" || u == "+" || g == "+" {
		return Owner{}, fmt.Errorf("%q: %w", s, ErrBadLabel)
	}
	return Owner{UID: uint32(uid), GID: uint32(gid)}, nil
}

// Label reads the owner libvirt remembered for path, which must not be a
// symlink (it is not followed). ok is false when libvirt remembers none:
// no label, no outstanding labelling (ref_dac), or a value that does not
// parse.
func Label(path string) (o Owner, ok bool) {
	var buf [64]byte
	n, err := unix.Lgetxattr(path, XattrRefDAC, buf[:])
	if err != nil {
		return Owner{}, false
	}
	if refs, err := strconv.ParseUint(strings.TrimRight(string(buf[:n]), "\x00"), 10, 32); err != nil || refs == 0 {
		return Owner{}, false
	}
	n, err = unix.Lgetxattr(path, XattrDAC, buf[:])
	if err != nil {
		return Owner{}, false
	}
	o, err = ParseLabel(string(buf[:n]))
	return o, err == nil
}
