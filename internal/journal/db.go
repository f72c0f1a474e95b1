package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
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

	allBuckets = [][]byte{bucketMeta, bucketEntries, bucketDomain, bucketBoot, bucketUnheld, bucketInode, bucketGrants}

	metaVersion = []byte("version")
)

// MaxEntrySize bounds one entry's stored encoding. An entry grows with the
// domains holding it (about 150 bytes each), so this allows thousands of
// domains on one shared base image; past it, prepare fails naming the file
// instead of writing what a later hook could not read back.
const MaxEntrySize = 1 << 20

// MaxTxEntries bounds how many entries one Save may write, so one hook call
// never commits more than the next one can read back in reasonable time. A
// prepare or release of one domain stays far below it.
const MaxTxEntries = 1 << 16

// diskEntry is an Entry as stored: a path that is not valid UTF-8 (which
// JSON would turn into U+FFFD) is kept as raw bytes instead.
type diskEntry struct {
	*Entry
	PathRaw []byte `json:"path_raw,omitempty"`
}

func encodeEntry(e *Entry) ([]byte, error) {
	d := diskEntry{Entry: e}
	if !utf8.ValidString(e.Path) {
		c := *e
		c.Path = ""
		d = diskEntry{Entry: &c, PathRaw: []byte(e.Path)}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode entry %q: %w", e.Path, err)
	}
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("the journal entry of %s would take %d bytes (%d holders), over the limit of %d: too many domains share this file", e.Path, len(b), len(e.Holders), MaxEntrySize)
	}
	return b, nil
}

// decodeEntry parses one stored entry; anything it does not fully
// understand is ErrDamaged.
func decodeEntry(b []byte) (*Entry, error) {
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: entry of %d bytes is more than %d", ErrDamaged, len(b), MaxEntrySize)
	}
	d := diskEntry{Entry: &Entry{}}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if dec.More() || dec.InputOffset() != int64(len(bytes.TrimRight(b, " \t\r\n"))) {
		return nil, fmt.Errorf("%w: trailing data after the entry", ErrDamaged)
	}
	e := d.Entry
	if d.PathRaw != nil {
		if e.Path != "" || utf8.Valid(d.PathRaw) {
			return nil, fmt.Errorf("%w: entry has both path and path_raw, or a path_raw that is valid UTF-8", ErrDamaged)
		}
		e.Path = string(d.PathRaw)
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

// indexKeys lists the index items of entry e stored under key.
func indexKeys(e *Entry, key string) map[string][][]byte {
	out := map[string][][]byte{}
	add := func(bucket []byte, group ...[]byte) {
		k := bytes.Join(append(group, []byte(key)), nil)
		out[string(bucket)] = append(out[string(bucket)], k)
	}
	domains := map[string]bool{}
	boots := map[string]bool{}
	for _, h := range e.Holders {
		if !domains[h.Domain] {
			domains[h.Domain] = true
			add(bucketDomain, lenPrefix(h.Domain))
		}
		if !boots[h.BootID] {
			boots[h.BootID] = true
			add(bucketBoot, lenPrefix(h.BootID))
		}
	}
	if len(e.Holders) == 0 {
		add(bucketUnheld)
	}
	if e.ACL == nil {
		add(bucketInode, be64(e.Ino))
	} else {
		add(bucketGrants, be64(e.Dev), be64(e.Ino))
	}
	return out
}

// reader reads the store in one read transaction.
type reader struct {
	tx *bolt.Tx
}

func (r *reader) raw(key string) []byte {
	b := r.tx.Bucket(bucketEntries)
	if b == nil {
		return nil
	}
	return b.Get([]byte(key))
}

// scan calls f with the entry key of every item of bucket whose key starts
// with prefix, except those starting with skip (when set).
func (r *reader) scan(bucket, prefix, skip []byte, f func(key string)) {
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
// want (nil to delete), keeping the indexes in step.
func writeEntry(tx *bolt.Tx, key string, old, want *Entry, enc []byte) error {
	if old != nil {
		for bucket, ks := range indexKeys(old, key) {
			b := tx.Bucket([]byte(bucket))
			for _, k := range ks {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
	}
	entries := tx.Bucket(bucketEntries)
	if want == nil {
		return entries.Delete([]byte(key))
	}
	if err := entries.Put([]byte(key), enc); err != nil {
		return err
	}
	for bucket, ks := range indexKeys(want, key) {
		b := tx.Bucket([]byte(bucket))
		for _, k := range ks {
			if err := b.Put(k, []byte(key)); err != nil {
				return err
			}
		}
	}
	return nil
}
