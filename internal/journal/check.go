package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// bbolt's meta page, as bbolt (v1.4) lays it out after the 16-byte page
// header: magic, version, page size, flags (u32 each), root bucket (pgid,
// sequence), freelist pgid, high water mark pgid, txid, checksum (u64
// each). The checksum is FNV-1a 64 of everything before it.
const (
	pageHeaderSize  = 16
	metaSize        = 64
	metaVersion2    = 2
	metaChecksumOff = 56
	noFreelist      = ^uint64(0)
	minPageSize     = 1 << 10
	maxPageSize     = 1 << 16
)

// meta is what checkFile reads of one meta page.
type meta struct {
	pageSize       uint64
	root, freelist uint64
	pgid, txid     uint64
	valid          bool
	invalidWhy     string
	offset         int64
}

func parseMeta(b []byte, off int64) meta {
	m := meta{offset: off}
	if len(b) < pageHeaderSize+metaSize {
		m.invalidWhy = "cut short"
		return m
	}
	mb := b[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.LittleEndian
	h := fnv.New64a()
	_, _ = h.Write(mb[:metaChecksumOff])
	switch {
	case le.Uint32(mb[0:]) != 0xED0CDAED:
		m.invalidWhy = "no bbolt magic"
	case le.Uint32(mb[4:]) != metaVersion2:
		m.invalidWhy = fmt.Sprintf("bbolt version %d", le.Uint32(mb[4:]))
	case le.Uint64(mb[metaChecksumOff:]) != h.Sum64():
		m.invalidWhy = "bad checksum"
	default:
		m.valid = true
	}
	m.pageSize = uint64(le.Uint32(mb[8:]))
	m.root, m.freelist = le.Uint64(mb[16:]), le.Uint64(mb[32:])
	m.pgid, m.txid = le.Uint64(mb[40:]), le.Uint64(mb[48:])
	return m
}

// checkFile reads the meta pages of the journal database f before bbolt
// maps it, and refuses (ErrDamaged) a file bbolt would map past its end:
// bbolt maps at least 32 KiB and trusts the meta page's page count, so a
// file cut short (a full disk, a copy stopped midway, a truncate) is read
// beyond its last byte, and that read kills the process with SIGBUS,
// which no recover catches. An empty file is a journal a first writer is
// creating, and passes.
//
// This checks what bbolt's own open checks (magic, version, checksum of
// the meta page it would use) plus that every page the meta pages count,
// and the root and freelist pages, lie inside the file. It cannot check
// the pages in between; a fault reading one of those becomes a panic
// (withFaults) that the callers turn into ErrDamaged.
func checkFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	first := make([]byte, pageHeaderSize+metaSize)
	n, err := f.ReadAt(first, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	m0 := parseMeta(first[:n], 0)
	// The second meta page is one page further: at the page size the
	// first gives, or (when the first is bad) at the usual 4 KiB.
	off := int64(4096)
	if m0.valid && m0.pageSize >= minPageSize && m0.pageSize <= maxPageSize {
		off = int64(m0.pageSize)
	}
	second := make([]byte, pageHeaderSize+metaSize)
	n, err = f.ReadAt(second, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	m1 := parseMeta(second[:n], off)
	if !m0.valid && !m1.valid {
		return fmt.Errorf("%w: %d bytes, neither meta page is valid (%s; %s)", ErrDamaged, size, m0.invalidWhy, m1.invalidWhy)
	}
	for _, m := range []meta{m0, m1} {
		if !m.valid {
			continue
		}
		ps := m.pageSize
		switch {
		case ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0:
			return fmt.Errorf("%w: meta page at %d gives page size %d", ErrDamaged, m.offset, ps)
		case m.offset != 0 && uint64(m.offset) != ps:
			return fmt.Errorf("%w: meta page at %d gives page size %d", ErrDamaged, m.offset, ps)
		case m.pgid < 2 || m.pgid > uint64(size)/ps:
			return fmt.Errorf("%w: %d bytes, but its meta page (txid %d) counts %d pages of %d bytes: the file was cut short", ErrDamaged, size, m.txid, m.pgid, ps)
		case m.root < 2 || m.root >= m.pgid:
			return fmt.Errorf("%w: meta page (txid %d) puts the root at page %d of %d", ErrDamaged, m.txid, m.root, m.pgid)
		case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid):
			return fmt.Errorf("%w: meta page (txid %d) puts the freelist at page %d of %d", ErrDamaged, m.txid, m.freelist, m.pgid)
		}
	}
	return nil
}

// checkPath is checkFile for the journal at p, opened without following
// a symlink; a missing file passes (there is no journal yet).
func checkPath(p string) error {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer func() { _ = f.Close() }() // read only
	if err := checkFile(f); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// withFaults makes a memory fault of this goroutine (a page of the mapped
// journal that the file no longer has: SIGBUS) a panic instead of the end
// of the process, so the recover of the caller turns it into ErrDamaged.
// Use as: defer withFaults()().
func withFaults() func() {
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}
