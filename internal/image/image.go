package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Info describes one image file.
type Info struct {
	// Format is "qcow2", "qcow", "qed", "vmdk" or "raw" (raw means no format
	// with a header parsed here was recognised).
	Format string
	// BackingName is the backing file name exactly as stored in the header,
	// relative or absolute, "" if none. Never longer than 4095 bytes, never
	// contains NUL.
	BackingName string
	// BackingFormat is the backing format recorded in the image: the qcow2
	// backing format extension, "raw" for QED images flagged no-probe, "vmdk"
	// for VMDK (QEMU assumes it). "" if not recorded.
	BackingFormat string
	// Extents lists the extent file names of a VMDK descriptor as written
	// (relative names are relative to the descriptor's directory), in order.
	// nil for other formats and for monolithic sparse VMDK files, whose only
	// extent is the file itself.
	Extents []string
	// DataFile is the qcow2 external data file name as stored in the header
	// ("" if none or if the image does not use an external data file).
	DataFile string
}

// Sentinel errors, matchable with errors.Is. Errors from ReadFormat
// wrap one of these with detail, or wrap the ReaderAt's own error.
var (
	// ErrMalformed means the header is inconsistent, truncated or claims
	// more than the bounds QEMU (or this package) accepts.
	ErrMalformed = errors.New("malformed image header")
	// ErrUnsupported means a header version, feature or VMDK create type
	// QEMU would refuse to open, or a format name ReadFormat does not know.
	ErrUnsupported = errors.New("unsupported image")
	// ErrWrongFormat means ReadFormat was asked for a format whose magic the
	// file does not carry.
	ErrWrongFormat = errors.New("image is not in the expected format")
)

// Format names used in Info.Format.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
	FormatQcow  = "qcow"
	FormatQED   = "qed"
	FormatVMDK  = "vmdk"

	// formatVMDKText makes parse treat a file as a VMDK descriptor
	// without probing; it never appears in Info.
	formatVMDKText = "vmdk descriptor"
)

const (
	// maxRead bounds the bytes one call reads: a VMDK descriptor of up to
	// 1 MiB-1 (QEMU's own limit) plus the few small structures around it.
	maxRead = 1<<20 + 64<<10
	// headSize is what is read up front: enough for every fixed header and
	// for QEMU's 2 KiB probe buffer, so most images need no second read.
	headSize = 4096
	// probeSize is QEMU's BLOCK_PROBE_BUF_SIZE: format probes see this much.
	probeSize = 2048
	// maxName bounds names QEMU keeps in PATH_MAX buffers.
	maxName = 4095
)

// probeRead inspects the image through r (size = file size in bytes),
// probing its format from the content as `qemu-img info` does without -f.
// The hook never probes (libvirt does not either: a guest that writes a
// qcow2 header into a raw disk would otherwise choose its backing file);
// only this package's tests and fuzz targets use it, to exercise every
// parser from any bytes. It reads
// only header structures, at most about 1 MiB in total, and never panics or
// allocates in proportion to header claims. On error the returned Info may
// still carry the Format that was recognised.
//
// probeRead does not open backing or extent files and does not check names.
func probeRead(r io.ReaderAt, size int64) (Info, error) {
	s, err := newSource(r, size)
	if err != nil {
		return Info{}, err
	}
	return s.parse(probe(s.head))
}

// ReadFormat inspects the image through r (size = file size in bytes) as
// the format the domain XML gives (<driver type=...>): it never probes. It
// reads only header structures, at most about 1 MiB in total, and never
// panics or allocates in proportion to header claims; it does not open
// backing or extent files and does not check names. For "raw" and other formats
// QEMU gives no backing file it returns Info{Format: format} without
// reading. For qcow2, qcow and qed the magic must match (ErrWrongFormat
// otherwise). For vmdk a file without sparse magic is parsed as a text
// descriptor, as QEMU does. Unknown format names give ErrUnsupported.
func ReadFormat(r io.ReaderAt, size int64, format string) (Info, error) {
	switch format {
	case FormatQcow2, FormatQcow, FormatQED, FormatVMDK:
	default:
		if noBacking[format] {
			return Info{Format: format}, nil
		}
		return Info{}, fmt.Errorf("%w: format %q", ErrUnsupported, format)
	}
	s, err := newSource(r, size)
	if err != nil {
		return Info{}, err
	}
	got := probe(s.head)
	// A VMDK text descriptor QEMU's probe rejects is still opened as one
	// when the format is given, so only the magic formats must match.
	if got != format && !(format == FormatVMDK && got == FormatRaw) {
		return Info{}, fmt.Errorf("%w: want %s, header says %s", ErrWrongFormat, format, got)
	}
	if format == FormatVMDK && got == FormatRaw {
		got = formatVMDKText
	}
	return s.parse(got)
}

// noBacking lists libvirt/QEMU format names whose images never name another
// file QEMU opens.
var noBacking = map[string]bool{
	"raw": true, "iso": true, "bochs": true, "cloop": true, "dmg": true,
	"vpc": true, "vhd": true, "vdi": true, "vhdx": true, "ploop": true,
	"parallels": true, "luks": true, "fat": true, "dir": true,
}

// probe names the format of the file whose first bytes are head, using
// QEMU's probe rules for the formats handled here.
func probe(head []byte) string {
	buf := head
	if len(buf) > probeSize {
		buf = buf[:probeSize]
	}
	switch {
	case len(buf) >= 8 && bytes.HasPrefix(buf, []byte("QFI\xfb")):
		// qcow2_probe wants version >= 2 and a full QCowHeader, qcow_probe
		// version 1 and its smaller header; anything else is neither and
		// is raw to QEMU too.
		switch v := be32(buf[4:]); {
		case v >= 2 && len(buf) >= qcow2StructSize:
			return FormatQcow2
		case v == 1 && len(buf) >= qcowV1HeaderSize:
			return FormatQcow
		}
	case len(buf) >= qedHeaderSize && bytes.HasPrefix(buf, []byte("QED\x00")):
		return FormatQED
	case len(buf) >= 4 && (bytes.HasPrefix(buf, []byte("KDMV")) || bytes.HasPrefix(buf, []byte("COWD"))):
		return FormatVMDK
	case vmdkTextProbe(buf):
		return FormatVMDK
	}
	return FormatRaw
}

// parse dispatches on a format. On error only the format is kept: the
// rest may be half-filled.
func (s *source) parse(format string) (Info, error) {
	info, err := s.parseAs(format)
	if err != nil {
		return Info{Format: info.Format}, err
	}
	return info, nil
}

func (s *source) parseAs(format string) (Info, error) {
	switch format {
	case FormatQcow2:
		return s.parseQcow2()
	case FormatQcow:
		return s.parseQcow()
	case FormatQED:
		return s.parseQED()
	case FormatVMDK:
		return s.parseVMDK()
	case formatVMDKText:
		return s.parseVMDKText()
	}
	return Info{Format: FormatRaw}, nil
}

// source reads bounded ranges of the image. The first headSize bytes are
// read once and served from memory; every further read is charged against
// maxRead.
type source struct {
	r    io.ReaderAt
	size int64
	head []byte
	used int64
}

func newSource(r io.ReaderAt, size int64) (*source, error) {
	if size < 0 {
		return nil, fmt.Errorf("%w: negative file size %d", ErrMalformed, size)
	}
	s := &source{r: r, size: size}
	head, err := s.window(0, headSize)
	if err != nil {
		return nil, err
	}
	s.head = head
	return s, nil
}

// readAt returns exactly n bytes at off; a range outside the file is
// ErrMalformed (what names the structure, for the message).
func (s *source) readAt(off, n int64, what string) ([]byte, error) {
	if off < 0 || n < 0 || off > s.size || n > s.size-off {
		return nil, fmt.Errorf("%w: %s (%d bytes at offset %d) lies beyond the end of the %d-byte file",
			ErrMalformed, what, n, off, s.size)
	}
	if off+n <= int64(len(s.head)) {
		return s.head[off : off+n], nil
	}
	if s.used+n > maxRead {
		return nil, fmt.Errorf("%w: reading %s (%d bytes) would exceed the %d-byte header read limit",
			ErrMalformed, what, n, maxRead)
	}
	s.used += n
	buf := make([]byte, n)
	if _, err := s.r.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the file is shorter than size said
		}
		return nil, fmt.Errorf("read %s at offset %d: %w", what, off, err)
	}
	return buf, nil
}

// window returns up to n bytes at off, fewer where the file ends (QEMU reads
// such windows and zero-fills past EOF, which C strings then stop at).
func (s *source) window(off, n int64) ([]byte, error) {
	if off >= s.size {
		return nil, nil
	}
	n = min(n, s.size-off)
	return s.readAt(off, n, "header window")
}

// cstr cuts b at its first NUL, as QEMU's and libvirt's C strings end there.
func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func be64(b []byte) uint64 { return uint64(be32(b))<<32 | uint64(be32(b[4:])) }

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }
