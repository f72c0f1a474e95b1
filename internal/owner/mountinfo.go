package owner

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of a mount table (/proc/PID/mountinfo, proc(5)), its
// paths unescaped.
type Mount struct {
	ID  uint64 // the mount id, as statx's STATX_MNT_ID gives it
	Dev uint64 // the device number of the mounted filesystem (st_dev)
	// Root is the directory of the filesystem mounted here; Point where
	// it is mounted.
	Root, Point string
	// FSType is the type after the " - " separator ("ext4",
	// "fuse.glusterfs"); Source the mount source after it. Either is ""
	// when the line does not have it.
	FSType, Source string
}

// ParseMount reads one line of a mount table: "36 35 98:0 /mnt1 /mnt2
// rw,noatime master:1 - ext3 /dev/root rw,errors=continue". ok is false
// for a line without a numeric mount id, a major:minor device, or a mount
// point. Mount points come from whoever mounted (user namespaces, FUSE):
// every field is taken as text, never beyond its line.
func ParseMount(line string) (m Mount, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 5 {
		return Mount{}, false
	}
	id, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil {
		return Mount{}, false
	}
	majStr, minStr, found := strings.Cut(fields[2], ":")
	if !found {
		return Mount{}, false
	}
	ma, err1 := strconv.ParseUint(majStr, 10, 32)
	mi, err2 := strconv.ParseUint(minStr, 10, 32)
	if err1 != nil || err2 != nil {
		return Mount{}, false
	}
	m = Mount{ID: id, Dev: unix.Mkdev(uint32(ma), uint32(mi)),
		Root: unescapeOctal(fields[3]), Point: unescapeOctal(fields[4])}
	// Optional fields ("shared:5", "master:1") run from the 7th to the
	// "-" separator.
	for i := 6; i+1 < len(fields); i++ {
		if fields[i] == "-" {
			m.FSType = unescapeOctal(fields[i+1])
			if i+2 < len(fields) {
				m.Source = unescapeOctal(fields[i+2])
			}
			break
		}
	}
	return m, true
}

// ParseMounts reads a whole mount table, in its order (a later mount
// covers an earlier one at the same point); lines ParseMount refuses are
// left out.
func ParseMounts(table []byte) []Mount {
	var out []Mount
	for line := range strings.SplitSeq(string(table), "\n") {
		if m, ok := ParseMount(line); ok {
			out = append(out, m)
		}
	}
	return out
}

// unescapeOctal undoes the kernel's \ooo escaping of spaces, tabs, newlines
// and backslashes in /proc mount and swap tables.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
