package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// The journal on disk is one bbolt file. Entries are stored by key; the
// other buckets are indexes whose keys are a group followed by the entry
// key and whose values are the entry key, so a query reads exactly the
// entries of its group.
var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")
	bucketDomain  = []byte("by-domain") // len-prefixed domain, key
	bucketBoot    = []byte("by-boot")   // len-prefixed boot id of a holder, key
	bucketUnheld  = []byte("unheld")    // key of an entry without holders
	bucketInode   = []byte("by-inode")  // be64 ino, key (ownership entries)
	bucketGrants  = []byte("grants")    // be64 dev, be64 ino, key (ACL entries)

	indexBuckets = [][]byte{bucketDomain, bucketBoot, bucketUnheld, bucketInode, bucketGrants}
	allBuckets   = append([][]byte{bucketMeta, bucketEntries}, indexBuckets...)

	metaVersion = []byte("version")
)

// MaxEntrySize bounds one entry's stored encoding. An entry grows with the
// domains holding it (about 100 bytes each), so this allows thousands of
// domains on one shared base image; past it, prepare fails naming the file
// instead of writing what a later hook could not read back.
const MaxEntrySize = 1 << 20

// MaxTxEntries bounds how many entries one Save may write, so one hook call
// never commits more than the next one can read back in reasonable time. A
// prepare or release of one domain stays far below it.
const MaxTxEntries = 1 << 16

// An entry is stored in a compact binary form, not JSON: the entry of a
// base image shared by hundreds of domains is read and written by every
// prepare and release of any of them, under the lock, and JSON decoding
// took most of a millisecond for 500 holders. Paths are raw bytes, so a
// path that is not valid UTF-8 survives. Layout (uvarint: unsigned varint;
// str: uvarint length, then bytes):
//
//	byte   entryFormat
//	str    path
//	uvarint dev, ino, uid, gid, target uid, target gid
//	byte   flags (1: shared filesystem, 2: ACL present)
//	str    ACL (raw JSON), only with flag 2
//	varint birth
//	str    created boot id
//	uvarint generation; varint handle type; str handle; uvarint mount id
//	uvarint holder count, then per holder: str domain, uuid, boot id, kind
//
// Format 2 is format 1 followed by the file's recorded permissions:
//
//	uvarint mode; str access ACL (raw xattr, empty for none)
//
// An entry without them (Perms nil) is still written as format 1, byte
// for byte as before, so journals of earlier versions read as they were
// and are not rewritten for nothing; an entry of format 1 reads with
// unknown permissions.
const (
	entryFormat      = 1
	entryFormatPerms = 2
)

// maxHandle is the kernel's MAX_HANDLE_SZ.
const maxHandle = 128

const (
	flagShared = 1 << iota
	flagACL
)

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodeEntry(e *Entry) ([]byte, error) {
	if len(e.Handle) > maxHandle || e.MountID < 0 {
		return nil, fmt.Errorf("the journal entry of %s has a file handle of %d bytes and mount id %d: not one the kernel gives", e.Path, len(e.Handle), e.MountID)
	}
	n := 96 + len(e.Path) + len(e.ACL) + len(e.Created) + len(e.Handle)
	if e.Perms != nil {
		n += 16 + len(e.Perms.ACL)
	}
	for _, h := range e.Holders {
		n += 4 + len(h.Domain) + len(h.UUID) + len(h.BootID) + len(h.Kind)
	}
	if n > MaxEntrySize {
		return nil, fmt.Errorf("the journal entry of %s would take %d bytes (%d holders), over the limit of %d: too many domains share this file", e.Path, n, len(e.Holders), MaxEntrySize)
	}
	b := make([]byte, 0, n)
	if e.Perms != nil {
		b = append(b, entryFormatPerms)
	} else {
		b = append(b, entryFormat)
	}
	b = appendStr(b, e.Path)
	for _, v := range []uint64{e.Dev, e.Ino, uint64(e.UID), uint64(e.GID), uint64(e.TargetUID), uint64(e.TargetGID)} {
		b = binary.AppendUvarint(b, v)
	}
	var flags byte
	if e.Shared {
		flags |= flagShared
	}
	if e.ACL != nil {
		flags |= flagACL
	}
	b = append(b, flags)
	if e.ACL != nil {
		b = appendStr(b, string(e.ACL))
	}
	b = binary.AppendVarint(b, e.Birth)
	b = appendStr(b, e.Created)
	b = binary.AppendUvarint(b, uint64(e.Generation))
	b = binary.AppendVarint(b, int64(e.HandleType))
	b = appendStr(b, string(e.Handle))
	b = binary.AppendUvarint(b, uint64(e.MountID))
	b = binary.AppendUvarint(b, uint64(len(e.Holders)))
	for _, h := range e.Holders {
		b = appendStr(b, h.Domain)
		b = appendStr(b, h.UUID)
		b = appendStr(b, h.BootID)
		b = appendStr(b, h.Kind)
	}
	if e.Perms != nil {
		b = binary.AppendUvarint(b, uint64(e.Perms.Mode))
		b = appendStr(b, string(e.Perms.ACL))
	}
	return b, nil
}

// entryReader reads the fields of one stored entry; the first error sticks.
type entryReader struct {
	b   []byte
	err error
}

func (r *entryReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: entry: %s", ErrDamaged, what)
	}
}

func (r *entryReader) uvarint(limit uint64, what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail("bad " + what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *entryReader) str(what string) string {
	n := r.uvarint(math.MaxUint32, what+" length")
	if r.err == nil && n > uint64(len(r.b)) {
		r.fail(what + " longer than the entry")
	}
	if r.err != nil {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *entryReader) byte1(what string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("no " + what)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// decodeEntry parses one stored entry; anything it does not fully
// understand is ErrDamaged.
func decodeEntry(b []byte) (*Entry, error) {
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: entry of %d bytes is more than %d", ErrDamaged, len(b), MaxEntrySize)
	}
	r := &entryReader{b: b}
	format := r.byte1("format")
	if r.err == nil && format != entryFormat && format != entryFormatPerms {
		return nil, fmt.Errorf("%w: entry format %d, this hook understands %d and %d", ErrDamaged, format, entryFormat, entryFormatPerms)
	}
	e := &Entry{Path: r.str("path")}
	e.Dev = r.uvarint(math.MaxUint64, "dev")
	e.Ino = r.uvarint(math.MaxUint64, "ino")
	e.UID = uint32(r.uvarint(math.MaxUint32, "uid"))
	e.GID = uint32(r.uvarint(math.MaxUint32, "gid"))
	e.TargetUID = uint32(r.uvarint(math.MaxUint32, "target uid"))
	e.TargetGID = uint32(r.uvarint(math.MaxUint32, "target gid"))
	flags := r.byte1("flags")
	if flags&^(flagShared|flagACL) != 0 {
		r.fail(fmt.Sprintf("unknown flags %#x", flags))
	}
	e.Shared = flags&flagShared != 0
	if flags&flagACL != 0 {
		acl := r.str("acl")
		if r.err == nil && !json.Valid([]byte(acl)) {
			r.fail("acl is not JSON")
		}
		e.ACL = json.RawMessage(acl)
	}
	if r.err == nil {
		v, n := binary.Varint(r.b)
		if n <= 0 {
			r.fail("bad birth")
		} else {
			e.Birth, r.b = v, r.b[n:]
		}
	}
	e.Created = r.str("created boot id")
	e.Generation = uint32(r.uvarint(math.MaxUint32, "generation"))
	if r.err == nil {
		v, n := binary.Varint(r.b)
		if n <= 0 || v < math.MinInt32 || v > math.MaxInt32 {
			r.fail("bad handle type")
		} else {
			e.HandleType, r.b = int32(v), r.b[n:]
		}
	}
	if h := r.str("handle"); len(h) > maxHandle {
		r.fail("file handle too long")
	} else if h != "" {
		e.Handle = []byte(h)
	}
	e.MountID = int(r.uvarint(math.MaxInt32, "mount id"))
	// Every holder takes at least 4 bytes, which bounds the count by
	// what is left before anything is allocated.
	nh := r.uvarint(uint64(len(r.b))/4, "holder count")
	if r.err == nil && nh > 0 {
		e.Holders = make([]Holder, nh)
		for i := range e.Holders {
			e.Holders[i] = Holder{Domain: r.str("domain"), UUID: r.str("uuid"), BootID: r.str("boot id"), Kind: r.str("kind")}
		}
	}
	if format == entryFormatPerms {
		p := &owner.Perms{Mode: uint32(r.uvarint(0o7777, "mode"))}
		if a := r.str("file acl"); a != "" {
			p.ACL = []byte(a)
		}
		e.Perms = p
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d bytes of trailing data", len(r.b)))
	}
	if r.err != nil {
		return nil, r.err
	}
	if err := checkEntry(e); err != nil {
		return nil, fmt.Errorf("%w: entry %w", ErrDamaged, err)
	}
	return e, nil
}

func be64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// lenPrefix makes a string a self-delimiting index group, so no group is a
// prefix of another.
func lenPrefix(s string) []byte {
	b := binary.AppendUvarint(nil, uint64(len(s)))
	return append(b, s...)
}

// indexItem is one item of an index bucket (by its position in
// indexBuckets).
type indexItem struct {
	bucket int
	key    string
}

const (
	idxDomain = iota
	idxBoot
	idxUnheld
	idxInode
	idxGrants
)

// holderSets returns the domains and the boots of e's holders.
func holderSets(e *Entry) (domains, boots map[string]bool) {
	domains, boots = map[string]bool{}, map[string]bool{}
	if e == nil {
		return domains, boots
	}
	for _, h := range e.Holders {
		domains[h.Domain] = true
		boots[h.BootID] = true
	}
	return domains, boots
}

// otherItems lists e's index items other than by domain and by boot.
func otherItems(e *Entry, key string) []indexItem {
	if e == nil {
		return nil
	}
	var out []indexItem
	if len(e.Holders) == 0 {
		out = append(out, indexItem{idxUnheld, key})
	}
	if e.ACL == nil {
		out = append(out, indexItem{idxInode, string(be64(e.Ino)) + key})
	} else {
		out = append(out, indexItem{idxGrants, string(be64(e.Dev)) + string(be64(e.Ino)) + key})
	}
	return out
}

// reader reads the store in one read transaction; without one (no
// journal yet) it reads an empty journal.
type reader struct {
	tx *bolt.Tx
}

func (r *reader) raw(key string) []byte {
	if r.tx == nil {
		return nil
	}
	b := r.tx.Bucket(bucketEntries)
	if b == nil {
		return nil
	}
	return b.Get([]byte(key))
}

// scan calls f with the entry key of every item of bucket whose key starts
// with prefix, except those starting with skip (when set).
func (r *reader) scan(bucket, prefix, skip []byte, f func(key string)) {
	if r.tx == nil {
		return
	}
	b := r.tx.Bucket(bucket)
	if b == nil {
		return
	}
	c := b.Cursor()
	k, v := c.Seek(prefix)
	for k != nil && bytes.HasPrefix(k, prefix) {
		if skip != nil && bytes.HasPrefix(k, skip) {
			// Jump past the whole skipped group without reading it.
			next := successor(skip)
			if next == nil {
				return
			}
			k, v = c.Seek(next)
			continue
		}
		if bytes.Equal(bucket, bucketEntries) {
			f(string(k))
		} else {
			f(string(v))
		}
		k, v = c.Next()
	}
}

// successor is the least key greater than every key starting with p, nil
// if there is none.
func successor(p []byte) []byte {
	s := append([]byte{}, p...)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}

// writeEntry replaces the stored entry under key (old, possibly nil) with
// want (nil to delete), keeping the indexes in step. Only index items that
// differ are touched: adding one holder to a base image shared by hundreds
// of domains writes one item, not hundreds.
func writeEntry(tx *bolt.Tx, key string, old, want *Entry, enc []byte) error {
	// Holders are compared as sets of domains and of boots, so the index
	// work follows the holders that changed; the few other items are
	// compared whole.
	var was, now []indexItem
	oldDomains, oldBoots := holderSets(old)
	newDomains, newBoots := holderSets(want)
	for _, d := range []struct {
		bucket   int
		from, to map[string]bool
	}{{idxDomain, oldDomains, newDomains}, {idxBoot, oldBoots, newBoots}} {
		for v := range d.from {
			if !d.to[v] {
				was = append(was, indexItem{d.bucket, string(lenPrefix(v)) + key})
			}
		}
		for v := range d.to {
			if !d.from[v] {
				now = append(now, indexItem{d.bucket, string(lenPrefix(v)) + key})
			}
		}
	}
	oldRest, newRest := otherItems(old, key), otherItems(want, key)
	for _, it := range oldRest {
		if !slices.Contains(newRest, it) {
			was = append(was, it)
		}
	}
	for _, it := range newRest {
		if !slices.Contains(oldRest, it) {
			now = append(now, it)
		}
	}
	for _, it := range was {
		if err := tx.Bucket(indexBuckets[it.bucket]).Delete([]byte(it.key)); err != nil {
			return err
		}
	}
	for _, it := range now {
		if err := tx.Bucket(indexBuckets[it.bucket]).Put([]byte(it.key), []byte(key)); err != nil {
			return err
		}
	}
	entries := tx.Bucket(bucketEntries)
	if want == nil {
		return entries.Delete([]byte(key))
	}
	return entries.Put([]byte(key), enc)
}
