package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
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
}

// Key identifies an entry: a chown entry by inode, an ACL entry by inode
// and the uid it grants.
func (e *Entry) Key() string {
	if e.ACL != nil {
		return fmt.Sprintf("acl:%d:%d:%d", e.Dev, e.Ino, e.TargetUID)
	}
	return fmt.Sprintf("%d:%d", e.Dev, e.Ino)
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

// State is the whole journal.
type State struct {
	Version int      `json:"version"`
	Entries []*Entry `json:"entries"`
	index   map[string]*Entry
}

func (s *State) reindex() {
	s.index = make(map[string]*Entry, len(s.Entries))
	for _, e := range s.Entries {
		s.index[e.Key()] = e
	}
}

// Lookup finds the entry for key.
func (s *State) Lookup(key string) *Entry {
	if s.index == nil {
		s.reindex()
	}
	return s.index[key]
}

// Add inserts a new entry; the caller makes sure its key is not taken.
func (s *State) Add(e *Entry) {
	if s.index == nil {
		s.reindex()
	}
	s.Entries = append(s.Entries, e)
	s.index[e.Key()] = e
}

// Remove deletes the entry with key.
func (s *State) Remove(key string) {
	if s.index == nil {
		s.reindex()
	}
	target := s.index[key]
	if target == nil {
		return
	}
	delete(s.index, key)
	out := s.Entries[:0]
	for _, e := range s.Entries {
		// Identity, not Key(): Key formats a string, and release removes
		// every entry, which made this quadratic in Sprintf calls.
		if e != target {
			out = append(out, e)
		}
	}
	s.Entries = out
}

// Clone returns a deep copy, used to roll back a failed prepare.
func (s *State) Clone() *State {
	c := &State{Version: s.Version, Entries: make([]*Entry, 0, len(s.Entries))}
	for _, e := range s.Entries {
		ne := *e
		ne.Holders = append([]Holder(nil), e.Holders...)
		c.Entries = append(c.Entries, &ne)
	}
	c.reindex()
	return c
}

// Decode parses a state file. Every entry must have an absolute clean path
// and a holder list; anything else is ErrDamaged, because acting on a state
// we do not understand could restore the wrong owner.
func Decode(b []byte) (*State, error) {
	if len(b) > MaxStateSize {
		return nil, fmt.Errorf("%w: %d bytes is more than %d", ErrDamaged, len(b), MaxStateSize)
	}
	var s State
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
		if !filepath.IsAbs(e.Path) || filepath.Clean(e.Path) != e.Path {
			return nil, fmt.Errorf("%w: entry %d has path %q, not absolute and clean", ErrDamaged, i, e.Path)
		}
		if seen[e.Key()] {
			return nil, fmt.Errorf("%w: entry %d (%s) appears twice", ErrDamaged, i, e.Path)
		}
		seen[e.Key()] = true
	}
	s.reindex()
	return &s, nil
}

// Encode renders the state deterministically (entries sorted by path).
func (s *State) Encode() ([]byte, error) {
	sort.SliceStable(s.Entries, func(i, j int) bool {
		if s.Entries[i].Path != s.Entries[j].Path {
			return s.Entries[i].Path < s.Entries[j].Path
		}
		return s.Entries[i].Key() < s.Entries[j].Key()
	})
	s.Version = FormatVersion
	if s.Entries == nil {
		s.Entries = []*Entry{}
	}
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// The queries below are the whole read interface callers use besides
// Lookup: each names the entries one decision needs, so a store can answer
// it from an index instead of a scan of everything the host holds.

// HeldBy returns the entries domain holds (on any boot).
func (s *State) HeldBy(domain string) []*Entry {
	var out []*Entry
	for _, e := range s.Entries {
		if e.HeldBy(domain) {
			out = append(out, e)
		}
	}
	return out
}

// Unheld returns the entries no domain holds on boot: left by an earlier
// boot, or by a release that died between forgetting its holders and
// giving the files back.
func (s *State) Unheld(boot string) []*Entry {
	var out []*Entry
	for _, e := range s.Entries {
		if len(e.LiveHolders(boot)) == 0 {
			out = append(out, e)
		}
	}
	return out
}

// ByInode returns the ownership entries (not ACL grants) recorded for inode
// number ino on any device: device numbers may change across boots.
func (s *State) ByInode(ino uint64) []*Entry {
	var out []*Entry
	for _, e := range s.Entries {
		if e.ACL == nil && e.Ino == ino {
			out = append(out, e)
		}
	}
	return out
}

// Grants returns the search-ACL entries recorded on directory dev:ino.
func (s *State) Grants(dev, ino uint64) []*Entry {
	var out []*Entry
	for _, e := range s.Entries {
		if e.ACL != nil && e.Dev == dev && e.Ino == ino {
			out = append(out, e)
		}
	}
	return out
}

// All returns every entry. Its cost grows with the host's state: only
// commands an administrator runs (status, restore --all) use it.
func (s *State) All() []*Entry { return s.Entries }
