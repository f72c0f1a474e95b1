package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// FormatVersion is the version of the state file layout.
const FormatVersion = 1

// MaxStateSize bounds the state file we are willing to parse.
const MaxStateSize = 64 << 20

// ErrDamaged is wrapped when the state file cannot be parsed.
var ErrDamaged = errors.New("state file damaged")

// Holder is one domain holding an entry.
type Holder struct {
	Domain string `json:"domain"`
	UUID   string `json:"uuid,omitempty"`
	BootID string `json:"boot_id"`
	// Kind is what the resource is to this domain ("disk", "backing", ...).
	Kind string `json:"kind,omitempty"`
}

// Entry is one inode the hook changed (or will change) for its holders.
type Entry struct {
	Path string `json:"path"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	// UID/GID is the original owner: who owned the inode before the first
	// holder took it. It is written once and never overwritten.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// TargetUID/GID is the owner the holders gave it.
	TargetUID uint32 `json:"target_uid"`
	TargetGID uint32 `json:"target_gid"`
	// Shared is true when the inode lives on a filesystem shared between
	// hosts (NFS, CephFS, ...); see migration handling in Release.
	Shared  bool     `json:"shared_fs,omitempty"`
	Holders []Holder `json:"holders"`
	// ACL, when set, says this entry is a search-permission ACL entry
	// added to a directory, not an ownership change.
	ACL json.RawMessage `json:"acl,omitempty"`
	// Birth is the inode's creation time (statx btime, ns), 0 if unknown:
	// with Dev and Ino it tells the recorded file from a later one that
	// reuses the inode number.
	Birth int64 `json:"birth,omitempty"`
	// Created is the boot the entry was first recorded on.
	Created string `json:"created_boot_id"`
	// Generation, HandleType, Handle and MountID complete the inode's
	// identity (owner.Identity): the inode generation, and the file
	// handle that finds it after a rename. Zero when unknown.
	Generation uint32 `json:"generation,omitempty"`
	HandleType int32  `json:"handle_type,omitempty"`
	Handle     []byte `json:"handle,omitempty"`
	MountID    int    `json:"mount_id,omitempty"`
	// Perms are the file's permission bits and access ACL before QEMU
	// got it, which release puts back when they changed while QEMU owned
	// the file. Nil when unknown: entries recorded by earlier versions,
	// ACL grant entries, and files that already had the owner QEMU got
	// (user and group).
	Perms *owner.Perms `json:"perms,omitempty"`
}

// Key identifies an entry: a chown entry by inode, an ACL entry by inode
// and the uid it grants.
func (e *Entry) Key() string {
	if e.ACL != nil {
		return ACLKey(owner.ID{Dev: e.Dev, Ino: e.Ino}, e.TargetUID)
	}
	return Key(owner.ID{Dev: e.Dev, Ino: e.Ino})
}

// Key is the key of the chown entry of inode id. strconv, not fmt: keys
// are built for every entry a call touches and in every sort comparison.
func Key(id owner.ID) string {
	b := make([]byte, 0, 41)
	b = strconv.AppendUint(b, id.Dev, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, id.Ino, 10)
	return string(b)
}

// ACLKey is the key of the entry of the search ACL granted to uid on
// directory id.
func ACLKey(id owner.ID, uid uint32) string {
	b := make([]byte, 0, 56)
	b = append(b, "acl:"...)
	b = strconv.AppendUint(b, id.Dev, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, id.Ino, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(uid), 10)
	return string(b)
}

// LiveHolders returns the holders taken on boot.
func (e *Entry) LiveHolders(boot string) []Holder {
	var out []Holder
	for _, h := range e.Holders {
		if h.BootID == boot {
			out = append(out, h)
		}
	}
	return out
}

// HeldBy reports whether domain holds the entry (on any boot).
func (e *Entry) HeldBy(domain string) bool {
	for _, h := range e.Holders {
		if h.Domain == domain {
			return true
		}
	}
	return false
}

// State is the journal as one call sees it.
//
// A State from Store.Load is a lazy view of the store: it loads an entry
// only when a query or Lookup returns it, and Store.Save writes only the
// entries that were added, removed or changed since, so a call costs what
// it touches, not what the host holds. Entries are returned by pointer and
// may be changed in place; Save notices. An entry's key fields (Dev, Ino,
// and for ACL entries TargetUID) must not change in place: Remove it and
// Add it again. A State is not safe for concurrent use, and a lazy State is
// valid only while its Store holds the lock it was loaded under.
//
// A State from Decode or LoadFile (a state file set aside, or another
// state directory's journal) holds every entry in memory.
type State struct {
	Version int
	// mem is the list of a State from Decode or LoadFile.
	mem   []*Entry
	index map[string]*Entry

	// Lazy states only.
	store *Store
	fam   *family
	// slots holds what this state has loaded, added (non-nil) or removed
	// (nil), by key.
	slots map[string]*Entry
	// damage is the first entry that could not be decoded: Save refuses
	// to write over a store it could not fully read, and sets it aside.
	damage error
	// fault is the first failure to read the store for another reason.
	fault error
	// readOnly is a State loaded without the lock.
	readOnly bool
}

// family is shared by a lazy State and its clones: the stored encoding of
// every key any of them touched, as it was when first touched (nil when
// absent). A clone saves its own view of those keys, which is how Save of
// a Clone taken before changes rolls all of them back.
type family struct {
	base map[string][]byte
}

func (s *State) lazy() bool { return s.store != nil }

func (s *State) reindex() {
	s.index = make(map[string]*Entry, len(s.mem))
	for _, e := range s.mem {
		s.index[e.Key()] = e
	}
}

// Lookup finds the entry for key, nil if there is none.
func (s *State) Lookup(key string) *Entry {
	if s.lazy() {
		var e *Entry
		s.view(func(r *reader) { e = s.get(r, key) })
		return e
	}
	if s.index == nil {
		s.reindex()
	}
	return s.index[key]
}

// Add inserts a new entry; the caller makes sure its key is not taken.
func (s *State) Add(e *Entry) {
	key := e.Key()
	if s.lazy() {
		s.view(func(r *reader) { s.touch(r, key) })
		s.slots[key] = e
		return
	}
	if s.index == nil {
		s.reindex()
	}
	s.mem = append(s.mem, e)
	s.index[key] = e
}

// Remove deletes the entry with key.
func (s *State) Remove(key string) {
	if s.lazy() {
		s.view(func(r *reader) { s.touch(r, key) })
		s.slots[key] = nil
		return
	}
	if s.index == nil {
		s.reindex()
	}
	target := s.index[key]
	if target == nil {
		return
	}
	delete(s.index, key)
	out := s.mem[:0]
	for _, e := range s.mem {
		// Identity, not Key(): Key formats a string, and release removes
		// every entry, which made this quadratic in Sprintf calls.
		if e != target {
			out = append(out, e)
		}
	}
	s.mem = out
}

func cloneEntry(e *Entry) *Entry {
	ne := *e
	ne.Holders = append([]Holder(nil), e.Holders...)
	if e.ACL != nil {
		ne.ACL = append(json.RawMessage{}, e.ACL...)
	}
	if e.Handle != nil {
		ne.Handle = append([]byte{}, e.Handle...)
	}
	if e.Perms != nil {
		p := *e.Perms
		p.ACL = append([]byte(nil), e.Perms.ACL...)
		ne.Perms = &p
	}
	return &ne
}

// Clone returns a deep copy, used to roll back a failed prepare: saving
// the clone puts back every entry the original (or the clone) touched as
// it was when the clone was taken.
func (s *State) Clone() *State {
	if s.lazy() {
		c := &State{Version: s.Version, store: s.store, fam: s.fam, slots: make(map[string]*Entry, len(s.slots)), damage: s.damage, fault: s.fault, readOnly: s.readOnly}
		for k, e := range s.slots {
			if e != nil {
				e = cloneEntry(e)
			}
			c.slots[k] = e
		}
		return c
	}
	c := &State{Version: s.Version, mem: make([]*Entry, 0, len(s.mem))}
	for _, e := range s.mem {
		c.mem = append(c.mem, cloneEntry(e))
	}
	c.reindex()
	return c
}

// touch records the stored encoding of key in the family the first time
// any member touches it.
func (s *State) touch(r *reader, key string) {
	if _, ok := s.fam.base[key]; ok {
		return
	}
	if b := r.raw(key); b != nil {
		s.fam.base[key] = append([]byte{}, b...)
	} else {
		s.fam.base[key] = nil
	}
}

// get returns this state's entry for key, loading it on first use.
func (s *State) get(r *reader, key string) *Entry {
	if e, ok := s.slots[key]; ok {
		return e
	}
	s.touch(r, key)
	b := s.fam.base[key]
	if b == nil {
		return nil
	}
	e, err := decodeEntry(b)
	if err == nil && e.Key() != key {
		err = fmt.Errorf("%w: entry %s is stored under key %q, its own is %q", ErrDamaged, e.Path, key, e.Key())
	}
	if err != nil {
		if s.damage == nil {
			s.damage = fmt.Errorf("entry %q: %w", key, err)
		}
		return nil
	}
	s.slots[key] = e
	return e
}

// view runs f with a reader of the store. A store that cannot be read
// marks the state damaged, so Save refuses and sets the store aside; any
// other failure makes Save refuse only.
func (s *State) view(f func(*reader)) {
	var err error
	if s.readOnly {
		err = s.store.viewRO(f)
	} else {
		err = s.store.view(f)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrDamaged) && !s.readOnly:
		if s.damage == nil {
			s.damage = err
		}
	case s.fault == nil:
		// Not the journal's fault (used without Load, after Unlock):
		// Save refuses, but sets nothing aside.
		s.fault = err
	}
}

// query returns the entries of this state's view that pred accepts, among
// the keys the index prefix lists and those this state's family touched
// (which the stored index may not reflect yet). Sorted by path, then key.
func (s *State) query(bucket []byte, prefixes [][]byte, skip []byte, pred func(*Entry) bool) []*Entry {
	var out []*Entry
	s.view(func(r *reader) {
		// Every key is considered once: the index's keys first, then
		// those this state holds (loaded, added or removed), then the rest
		// its family touched. Callers query once per file, so the entries
		// this state already holds are tested in place, not looked up
		// again: a prepare of N files would otherwise cost N² lookups.
		var scanned map[string]bool
		for _, p := range prefixes {
			r.scan(bucket, p, skip, func(key string) {
				if scanned[key] {
					return
				}
				if scanned == nil {
					scanned = make(map[string]bool)
				}
				scanned[key] = true
				if e := s.get(r, key); e != nil && pred(e) {
					out = append(out, e)
				}
			})
		}
		for k, e := range s.slots {
			if e != nil && !scanned[k] && pred(e) {
				out = append(out, e)
			}
		}
		for k := range s.fam.base {
			if _, held := s.slots[k]; held || scanned[k] {
				continue
			}
			if e := s.get(r, k); e != nil && pred(e) {
				out = append(out, e)
			}
		}
	})
	sortEntries(out)
	return out
}

func sortEntries(es []*Entry) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].Path != es[j].Path {
			return es[i].Path < es[j].Path
		}
		return es[i].Key() < es[j].Key()
	})
}

func (s *State) filter(pred func(*Entry) bool) []*Entry {
	var out []*Entry
	for _, e := range s.mem {
		if pred(e) {
			out = append(out, e)
		}
	}
	return out
}

// Decode parses a state file. Every entry must have an absolute clean path
// and a holder list; anything else is ErrDamaged, because acting on a state
// we do not understand could restore the wrong owner.
func Decode(b []byte) (*State, error) {
	if len(b) > MaxStateSize {
		return nil, fmt.Errorf("%w: %d bytes is more than %d", ErrDamaged, len(b), MaxStateSize)
	}
	var s stateFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	// dec.More is false before a stray ']' or '}', so ask for the next
	// token: only the end of input is acceptable after the state.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the state", ErrDamaged)
	}
	if s.Version != FormatVersion {
		return nil, fmt.Errorf("%w: version %d, this hook understands %d", ErrDamaged, s.Version, FormatVersion)
	}
	seen := make(map[string]bool, len(s.Entries))
	for i, e := range s.Entries {
		if e == nil {
			return nil, fmt.Errorf("%w: entry %d is null", ErrDamaged, i)
		}
		if err := checkEntry(e); err != nil {
			return nil, fmt.Errorf("%w: entry %d %w", ErrDamaged, i, err)
		}
		if seen[e.Key()] {
			return nil, fmt.Errorf("%w: entry %d (%s) appears twice", ErrDamaged, i, e.Path)
		}
		seen[e.Key()] = true
	}
	st := &State{Version: s.Version, mem: s.Entries}
	st.reindex()
	return st, nil
}

// checkEntry is what every decoded entry must satisfy.
func checkEntry(e *Entry) error {
	if !filepath.IsAbs(e.Path) || filepath.Clean(e.Path) != e.Path {
		return fmt.Errorf("has path %q, not absolute and clean", e.Path)
	}
	if e.Perms != nil {
		if e.Perms.Mode&^0o7777 != 0 {
			return fmt.Errorf("of %s has mode %#o, not permission bits", e.Path, e.Perms.Mode)
		}
		if len(e.Perms.ACL) > 0 {
			if _, err := acl.Parse(e.Perms.ACL); err != nil {
				return fmt.Errorf("of %s has an unreadable ACL: %w", e.Path, err)
			}
		}
	}
	return nil
}

// stateFile is the layout of a whole-state JSON file: the journal of
// earlier versions (imported once), and what Encode writes for a state
// set aside or exported.
type stateFile struct {
	Version int      `json:"version"`
	Entries []*Entry `json:"entries"`
}

// Encode renders the state deterministically (entries sorted by path) as a
// whole-state file Decode reads back.
func (s *State) Encode() ([]byte, error) {
	es := s.All()
	sortEntries(es)
	if !s.lazy() {
		s.mem = es
	}
	if es == nil {
		es = []*Entry{}
	}
	s.Version = FormatVersion
	b, err := json.MarshalIndent(stateFile{Version: FormatVersion, Entries: es}, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// The queries below are the whole read interface callers use besides
// Lookup: each names the entries one decision needs, so a store answers it
// from an index instead of a scan of everything the host holds. Each
// returns entries sorted by path.

// HeldBy returns the entries domain holds (on any boot).
func (s *State) HeldBy(domain string) []*Entry {
	pred := func(e *Entry) bool { return e.HeldBy(domain) }
	if !s.lazy() {
		return s.filter(pred)
	}
	return s.query(bucketDomain, [][]byte{lenPrefix(domain)}, nil, pred)
}

// Unheld returns the entries no domain holds on boot: left by an earlier
// boot, or by a release that died between forgetting its holders and
// giving the files back.
func (s *State) Unheld(boot string) []*Entry {
	pred := func(e *Entry) bool { return len(e.LiveHolders(boot)) == 0 }
	if !s.lazy() {
		return s.filter(pred)
	}
	// Entries without holders, and entries held on any other boot (the
	// current boot's range of the index is skipped, not read).
	var out []*Entry
	seen := make(map[*Entry]bool)
	for _, e := range s.query(bucketUnheld, [][]byte{nil}, nil, pred) {
		seen[e] = true
		out = append(out, e)
	}
	for _, e := range s.query(bucketBoot, [][]byte{nil}, lenPrefix(boot), pred) {
		if !seen[e] {
			out = append(out, e)
		}
	}
	sortEntries(out)
	return out
}

// ByInode returns the ownership entries (not ACL grants) recorded for inode
// number ino on any device: device numbers may change across boots.
func (s *State) ByInode(ino uint64) []*Entry {
	pred := func(e *Entry) bool { return e.ACL == nil && e.Ino == ino }
	if !s.lazy() {
		return s.filter(pred)
	}
	return s.query(bucketInode, [][]byte{be64(ino)}, nil, pred)
}

// Grants returns the search-ACL entries recorded on directory dev:ino.
func (s *State) Grants(dev, ino uint64) []*Entry {
	pred := func(e *Entry) bool { return e.ACL != nil && e.Dev == dev && e.Ino == ino }
	if !s.lazy() {
		return s.filter(pred)
	}
	return s.query(bucketGrants, [][]byte{append(be64(dev), be64(ino)...)}, nil, pred)
}

// All returns every entry. Its cost grows with the host's state: only
// commands an administrator runs (status, restore --all) use it.
func (s *State) All() []*Entry {
	if !s.lazy() {
		return append([]*Entry(nil), s.mem...)
	}
	return s.query(bucketEntries, [][]byte{nil}, nil, func(*Entry) bool { return true })
}
