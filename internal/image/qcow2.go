package image

import "fmt"

// qcow2 header layout (big endian), from QEMU's docs/interop/qcow2.txt.
const (
	qcowOffBackingOffset = 8  // u64
	qcowOffBackingSize   = 16 // u32
	qcow2OffClusterBits  = 20 // u32
	qcow2OffIncompat     = 72 // u64, v3 only
	qcow2OffHeaderLength = 100
	qcow2V2HeaderLength  = 72
	qcow2V3MinHeader     = 104
	qcow2StructSize      = 112 // sizeof(QCowHeader); qcow2_probe wants this much
	qcowV1HeaderSize     = 48  // sizeof(QCowHeader) of block/qcow.c

	qcow2MinClusterBits = 9
	qcow2MaxClusterBits = 21

	// maxBackingQcow is QEMU's and libvirt's limit on qcow/qcow2 backing
	// names (block/qcow2.c "Backing file name too long", libvirt's 1023).
	maxBackingQcow = 1023

	qcow2ExtEnd           = 0x00000000
	qcow2ExtBackingFormat = 0xe2792aca
	qcow2ExtDataFile      = 0x44415441
	// qcow2 backing formats live in a 16-byte buffer in QEMU.
	maxBackingFormat = 15
	// qcow2IncompatDataFile is incompatible feature bit 2: the guest data
	// lives in an external file named by the data file extension.
	qcow2IncompatDataFile = 1 << 2

	// maxExtArea bounds how much of the header extension area is read.
	// Real images use a few hundred bytes; QEMU allows up to a cluster.
	maxExtArea = 64 << 10
)

// parseQcow2 reads a qcow2 v2 or v3 header, following qcow2_do_open.
func (s *source) parseQcow2() (Info, error) {
	info := Info{Format: FormatQcow2}
	h, err := s.readAt(0, qcow2V2HeaderLength, "qcow2 header")
	if err != nil {
		return info, err
	}
	version := be32(h[4:])
	if version != 2 && version != 3 {
		return info, fmt.Errorf("%w: qcow2 version %d", ErrUnsupported, version)
	}
	clusterBits := be32(h[qcow2OffClusterBits:])
	if clusterBits < qcow2MinClusterBits || clusterBits > qcow2MaxClusterBits {
		return info, fmt.Errorf("%w: qcow2 cluster bits %d outside [%d, %d]",
			ErrMalformed, clusterBits, qcow2MinClusterBits, qcow2MaxClusterBits)
	}
	clusterSize := uint64(1) << clusterBits

	hdrLen := uint64(qcow2V2HeaderLength)
	var incompat uint64
	if version == 3 {
		h, err = s.readAt(0, qcow2V3MinHeader, "qcow2 v3 header")
		if err != nil {
			return info, err
		}
		incompat = be64(h[qcow2OffIncompat:])
		hdrLen = uint64(be32(h[qcow2OffHeaderLength:]))
		if hdrLen < qcow2V3MinHeader {
			return info, fmt.Errorf("%w: qcow2 header length %d below %d", ErrMalformed, hdrLen, qcow2V3MinHeader)
		}
		if hdrLen > clusterSize {
			return info, fmt.Errorf("%w: qcow2 header length %d exceeds cluster size %d", ErrMalformed, hdrLen, clusterSize)
		}
	}

	backingOff := be64(h[qcowOffBackingOffset:])
	backingLen := uint64(be32(h[qcowOffBackingSize:]))
	if backingOff > clusterSize {
		return info, fmt.Errorf("%w: qcow2 backing file offset %d beyond first cluster (%d bytes)",
			ErrMalformed, backingOff, clusterSize)
	}

	// Extensions sit between the header and the backing name, or fill the
	// first cluster when there is no backing name. QEMU walks them in v2
	// images too.
	extEnd := clusterSize
	if backingOff != 0 {
		extEnd = backingOff
	}
	dataFile, err := s.qcow2Extensions(hdrLen, extEnd, &info)
	if err != nil {
		return info, err
	}
	if incompat&qcow2IncompatDataFile != 0 {
		info.DataFile = dataFile
	}

	if backingOff != 0 {
		if backingLen > maxBackingQcow || backingLen > clusterSize-backingOff {
			return info, fmt.Errorf("%w: qcow2 backing file name length %d exceeds %d or the first cluster",
				ErrMalformed, backingLen, maxBackingQcow)
		}
		name, err := s.readAt(int64(backingOff), int64(backingLen), "qcow2 backing file name")
		if err != nil {
			return info, err
		}
		info.BackingName = cstr(name)
	}
	if info.BackingName == "" {
		// A recorded format means nothing without a backing file; QEMU
		// and libvirt both ignore it.
		info.BackingFormat = ""
	}
	return info, nil
}

// qcow2Extensions walks the header extensions in [start, end) like
// qcow2_read_extensions: each is magic u32, length u32, data padded to 8
// bytes; magic 0 ends the list. It fills info.BackingFormat and returns the
// data file name. Offsets only grow, so the walk always ends; its reads are
// capped at maxExtArea.
func (s *source) qcow2Extensions(start, end uint64, info *Info) (string, error) {
	if start >= end {
		return "", nil
	}
	area := end - start
	// Read the area once, capped. QEMU's block layer reads zeros past the
	// end of the file, so a short read is padded: a walk running off the
	// end meets an end marker there, as it does in QEMU.
	bufLen := min(area, maxExtArea)
	// The walk nearly always ends inside the head already read; only a
	// walk running past it reads the whole capped area, once. (An image
	// without a backing name has a whole cluster, 64 KiB, as its area.)
	var buf []byte
	if start < uint64(len(s.head)) {
		buf = s.head[start:min(uint64(len(s.head)), start+bufLen)]
	}
	full := false
	need := func(off, n uint64) ([]byte, error) {
		if off+n > uint64(len(buf)) && !full {
			full = true
			b, err := s.window(int64(start), int64(bufLen))
			if err != nil {
				return nil, err
			}
			if uint64(len(b)) < bufLen {
				// The three-index slice forces a copy: b may alias s.head.
				b = append(b[:len(b):len(b)], make([]byte, bufLen-uint64(len(b)))...)
			}
			buf = b
		}
		if off+n > uint64(len(buf)) {
			return nil, fmt.Errorf("%w: qcow2 header extensions run past %d bytes", ErrMalformed, maxExtArea)
		}
		return buf[off : off+n], nil
	}

	var dataFile string
	for off := uint64(0); off < area; {
		if area-off < 8 {
			return "", fmt.Errorf("%w: qcow2 header extension at offset %d too large", ErrMalformed, start+off)
		}
		ext, err := need(off, 8)
		if err != nil {
			return "", err
		}
		magic, n := be32(ext), uint64(be32(ext[4:]))
		off += 8
		if n > area-off {
			return "", fmt.Errorf("%w: qcow2 header extension 0x%08x length %d runs past offset %d",
				ErrMalformed, magic, n, end)
		}
		switch magic {
		case qcow2ExtEnd:
			return dataFile, nil
		case qcow2ExtBackingFormat:
			if n > maxBackingFormat {
				return "", fmt.Errorf("%w: qcow2 backing format length %d exceeds %d", ErrMalformed, n, maxBackingFormat)
			}
			b, err := need(off, n)
			if err != nil {
				return "", err
			}
			info.BackingFormat = cstr(b)
		case qcow2ExtDataFile:
			if n > maxName {
				return "", fmt.Errorf("%w: qcow2 data file name length %d exceeds %d", ErrMalformed, n, maxName)
			}
			b, err := need(off, n)
			if err != nil {
				return "", err
			}
			dataFile = cstr(b)
		}
		// Padding may run past end on the last extension; the loop
		// condition handles that as QEMU's does.
		off += (n + 7) &^ 7
	}
	return dataFile, nil
}

// parseQcow reads a qcow version 1 header (block/qcow.c): a backing name but
// no extensions and no recorded backing format.
func (s *source) parseQcow() (Info, error) {
	info := Info{Format: FormatQcow}
	h, err := s.readAt(0, qcowV1HeaderSize, "qcow header")
	if err != nil {
		return info, err
	}
	backingOff := be64(h[qcowOffBackingOffset:])
	backingLen := uint64(be32(h[qcowOffBackingSize:]))
	if backingOff == 0 {
		return info, nil
	}
	if backingLen > maxBackingQcow {
		return info, fmt.Errorf("%w: qcow backing file name length %d exceeds %d", ErrMalformed, backingLen, maxBackingQcow)
	}
	if backingOff > uint64(s.size) {
		return info, fmt.Errorf("%w: qcow backing file offset %d beyond the end of the %d-byte file",
			ErrMalformed, backingOff, s.size)
	}
	name, err := s.readAt(int64(backingOff), int64(backingLen), "qcow backing file name")
	if err != nil {
		return info, err
	}
	info.BackingName = cstr(name)
	return info, nil
}
