package image

import (
	"bytes"
	"fmt"
	"math"
	"strings"
)

// VMDK constants from QEMU's block/vmdk.c.
const (
	// vmdk4HeaderSize is magic plus VMDK4Header (packed).
	vmdk4HeaderSize     = 4 + 75
	vmdk4OffVersion     = 4  // u32
	vmdk4OffCapacity    = 12 // u64, sectors
	vmdk4OffDescOffset  = 28 // u64, sectors
	vmdkSparseDescStart = 0x200
	// vmdkDescSize is DESC_SIZE: QEMU looks for parentFileNameHint in this
	// many bytes of the descriptor.
	vmdkDescSize = 20 * 512
	// vmdkDescMax is vmdk_read_desc's cap on a descriptor read.
	vmdkDescMax = 1<<20 - 1
	// maxExtents bounds Info.Extents. A 2 TiB twoGbMaxExtent* disk has
	// 1024 extents; QEMU sets no limit but reads at most 1 MiB.
	maxExtents = 4096
	// maxExtentName is the width of sscanf's %511[...] in QEMU.
	maxExtentName = 511
	// maxCreateType is QEMU's ct[128] buffer less the NUL.
	maxCreateType = 127
)

// vmdkCreateTypes are the descriptor create types vmdk_open_desc_file
// accepts; monolithicSparse and streamOptimized are only valid as sparse
// files with magic.
var vmdkCreateTypes = map[string]bool{
	"monolithicFlat": true, "vmfs": true, "vmfsSparse": true, "seSparse": true,
	"twoGbMaxExtentSparse": true, "twoGbMaxExtentFlat": true,
}

// vmdkExtentTypes are the extent types vmdk_parse_extents opens; lines with
// other types are skipped.
var vmdkExtentTypes = map[string]bool{
	"FLAT": true, "SPARSE": true, "VMFS": true, "VMFSSPARSE": true, "SESPARSE": true,
}

// parseVMDK reads a VMDK file that is either sparse (KDMV or COWD magic) or
// a text descriptor, following vmdk_open.
func (s *source) parseVMDK() (Info, error) {
	if len(s.head) < 4 || !(bytes.HasPrefix(s.head, []byte("KDMV")) || bytes.HasPrefix(s.head, []byte("COWD"))) {
		return s.parseVMDKText()
	}
	info := Info{Format: FormatVMDK}
	if bytes.HasPrefix(s.head, []byte("KDMV")) {
		h, err := s.readAt(0, vmdk4HeaderSize, "vmdk sparse header")
		if err != nil {
			return info, err
		}
		capacity := le64(h[vmdk4OffCapacity:])
		descOff := le64(h[vmdk4OffDescOffset:])
		if capacity == 0 && descOff != 0 {
			// vmdk_open_vmdk4: a sparse file without capacity is a
			// wrapper around an embedded descriptor naming extents.
			if descOff > math.MaxInt64>>9 || int64(descOff<<9) >= s.size {
				return info, fmt.Errorf("%w: vmdk embedded descriptor at sector %d lies beyond the end of the %d-byte file",
					ErrMalformed, descOff, s.size)
			}
			desc, err := s.window(int64(descOff<<9), vmdkDescMax)
			if err != nil {
				return info, err
			}
			if info.Extents, err = vmdkDescriptorExtents(cstr(desc)); err != nil {
				return info, err
			}
		} else if v := le32(h[vmdk4OffVersion:]); v > 3 {
			return info, fmt.Errorf("%w: vmdk version %d", ErrUnsupported, v)
		}
	}
	// The parent hint is read at a fixed 0x200 for sparse files, whatever
	// the header's descriptor offset says (vmdk_open sets desc_offset).
	desc, err := s.window(vmdkSparseDescStart, vmdkDescSize)
	if err != nil {
		return info, err
	}
	info.BackingName, err = vmdkParentHint(cstr(desc))
	if err != nil {
		return info, err
	}
	if info.BackingName != "" {
		info.BackingFormat = FormatVMDK
	}
	return info, nil
}

// parseVMDKText reads a VMDK text descriptor file.
func (s *source) parseVMDKText() (Info, error) {
	info := Info{Format: FormatVMDK}
	if s.size < 4 {
		return info, fmt.Errorf("%w: %d-byte vmdk descriptor", ErrMalformed, s.size)
	}
	desc, err := s.window(0, vmdkDescMax)
	if err != nil {
		return info, err
	}
	text := cstr(desc)
	if info.Extents, err = vmdkDescriptorExtents(text); err != nil {
		return info, err
	}
	if len(text) > vmdkDescSize {
		text = text[:vmdkDescSize]
	}
	if info.BackingName, err = vmdkParentHint(text); err != nil {
		return info, err
	}
	if info.BackingName != "" {
		info.BackingFormat = FormatVMDK
	}
	return info, nil
}

// vmdkTextProbe is vmdk_probe for files without magic: comment and blank
// lines, then a "version=N" line.
func vmdkTextProbe(buf []byte) bool {
	p, end := 0, len(buf)
	for p < end {
		switch buf[p] {
		case '#':
			for p < end && buf[p] != '\n' {
				p++
			}
			p++
			continue
		case ' ':
			for p < end && buf[p] == ' ' {
				p++
			}
			if p < end && buf[p] == '\r' {
				p++
			}
			if p == end || buf[p] != '\n' {
				return false
			}
			p++
			continue
		}
		rest := buf[p:]
		for _, v := range []string{"version=1", "version=2", "version=3"} {
			if bytes.HasPrefix(rest, []byte(v+"\n")) || bytes.HasPrefix(rest, []byte(v+"\r\n")) {
				return true
			}
		}
		return false
	}
	return false
}

// vmdkParentHint finds parentFileNameHint like vmdk_parent_open: QEMU skips
// the key and the two characters after it (normally `="`) without checking
// them, then takes everything up to the next '"'.
func vmdkParentHint(desc string) (string, error) {
	const key = "parentFileNameHint"
	i := strings.Index(desc, key)
	if i < 0 {
		return "", nil
	}
	start := i + len(key) + 2
	if start > len(desc) {
		return "", fmt.Errorf("%w: vmdk parentFileNameHint cut short", ErrMalformed)
	}
	n := strings.IndexByte(desc[start:], '"')
	if n < 0 {
		return "", fmt.Errorf("%w: vmdk parentFileNameHint has no closing quote", ErrMalformed)
	}
	if n > maxName {
		return "", fmt.Errorf("%w: vmdk parentFileNameHint length %d exceeds %d", ErrMalformed, n, maxName)
	}
	return desc[start : start+n], nil
}

// vmdkDescriptorExtents checks the create type and lists the extents of a
// descriptor like vmdk_open_desc_file.
func vmdkDescriptorExtents(desc string) ([]string, error) {
	ct, ok := vmdkDescription(desc, "createType")
	if !ok {
		return nil, fmt.Errorf("%w: vmdk descriptor has no valid createType", ErrMalformed)
	}
	if !vmdkCreateTypes[ct] {
		return nil, fmt.Errorf("%w: vmdk create type %q", ErrUnsupported, ct)
	}
	return vmdkExtents(desc)
}

// vmdkDescription is vmdk_parse_description: the value after `name="`
// (the two characters are skipped unchecked) up to the next '"'.
func vmdkDescription(desc, name string) (string, bool) {
	i := strings.Index(desc, name)
	if i < 0 {
		return "", false
	}
	start := i + len(name) + 2
	if start >= len(desc) {
		return "", false
	}
	n := strings.IndexByte(desc[start:], '"')
	if n < 0 || n > maxCreateType {
		return "", false
	}
	return desc[start : start+n], true
}

// vmdkExtents is vmdk_parse_extents without opening anything. QEMU runs
// sscanf(p, "%10s %ld %10s \"%511[^\n\r\"]\" %ld") from each line start
// over the rest of the descriptor, so the scanner below keeps sscanf's
// quirks: whitespace skipping crosses line ends, overlong words are cut at
// the field width, and a name longer than 511 bytes is truncated.
func vmdkExtents(desc string) ([]string, error) {
	var extents []string
	// wsEnd is where the whitespace run an earlier line's scan skipped
	// ends. sscanf from a line start inside that run lands there too and
	// yields the same (already handled) result, so it is not repeated:
	// rescanning would make blank lines quadratic in a 1 MiB descriptor.
	wsEnd := 0
	for p := 0; p < len(desc); p = vmdkNextLine(desc, p) {
		if p < wsEnd {
			continue
		}
		if q := skipSpace(desc, p); q > p {
			wsEnd = q
			if q == len(desc) || desc[q-1] == '\n' {
				// Same as the line starting at q, which comes next.
				continue
			}
		}
		e := scanExtentLine(desc[p:])
		if e.matches < 4 || e.access != "RW" {
			continue
		}
		switch {
		case e.typ == "FLAT":
			if e.matches != 5 || e.offset < 0 {
				return nil, fmt.Errorf("%w: vmdk extent line %q", ErrMalformed, vmdkLine(desc, p))
			}
		case e.typ == "VMFS":
			if e.matches != 4 {
				return nil, fmt.Errorf("%w: vmdk extent line %q", ErrMalformed, vmdkLine(desc, p))
			}
		case e.matches != 4:
			return nil, fmt.Errorf("%w: vmdk extent line %q", ErrMalformed, vmdkLine(desc, p))
		}
		if e.sectors <= 0 || !vmdkExtentTypes[e.typ] {
			continue
		}
		if len(extents) == maxExtents {
			return nil, fmt.Errorf("%w: vmdk descriptor lists more than %d extents", ErrMalformed, maxExtents)
		}
		extents = append(extents, e.name)
	}
	return extents, nil
}

func vmdkNextLine(s string, p int) int {
	if i := strings.IndexByte(s[p:], '\n'); i >= 0 {
		return p + i + 1
	}
	return len(s)
}

// vmdkLine returns the line at p for error messages, shortened.
func vmdkLine(s string, p int) string {
	line := s[p:vmdkNextLine(s, p)]
	line = strings.TrimRight(line, "\r\n")
	if len(line) > 80 {
		line = line[:80] + "..."
	}
	return line
}

type extentLine struct {
	matches     int
	access, typ string
	sectors     int64
	name        string
	offset      int64
}

// scanExtentLine emulates glibc sscanf with
// "%10s %" SCNd64 " %10s \"%511[^\n\r\"]\" %" SCNd64 on s.
func scanExtentLine(s string) extentLine {
	var e extentLine
	i := 0
	word := func(width int) (string, bool) {
		i = skipSpace(s, i)
		j := i
		for j < len(s) && j-i < width && !isSpace(s[j]) {
			j++
		}
		if j == i {
			return "", false
		}
		w := s[i:j]
		i = j
		return w, true
	}
	number := func() (int64, bool) {
		i = skipSpace(s, i)
		n, used := scanInt(s[i:])
		if used == 0 {
			return 0, false
		}
		i += used
		return n, true
	}
	var ok bool
	if e.access, ok = word(10); !ok {
		return e
	}
	e.matches++
	if e.sectors, ok = number(); !ok {
		return e
	}
	e.matches++
	if e.typ, ok = word(10); !ok {
		return e
	}
	e.matches++
	i = skipSpace(s, i)
	if i >= len(s) || s[i] != '"' {
		return e
	}
	i++
	j := i
	for j < len(s) && j-i < maxExtentName && s[j] != '\n' && s[j] != '\r' && s[j] != '"' {
		j++
	}
	if j == i {
		return e
	}
	e.name = s[i:j]
	e.matches++
	i = j
	if i >= len(s) || s[i] != '"' {
		return e
	}
	i++
	if e.offset, ok = number(); !ok {
		return e
	}
	e.matches++
	return e
}

// isSpace is C isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// scanInt parses an optionally signed decimal integer at the start of s the
// way glibc's %d does, saturating on overflow like strtoll. It returns the
// bytes consumed, 0 if there is no number.
func scanInt(s string) (int64, int) {
	i := 0
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	var n uint64
	over := false
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		d := uint64(s[i] - '0')
		if n > (math.MaxUint64-d)/10 {
			over = true
		} else {
			n = n*10 + d
		}
		i++
	}
	if i == start {
		return 0, 0
	}
	switch {
	case neg && (over || n > 1<<63):
		return math.MinInt64, i
	case neg:
		return -int64(n), i // n == 1<<63 wraps to MinInt64, as intended
	case over || n > math.MaxInt64:
		return math.MaxInt64, i
	}
	return int64(n), i
}
