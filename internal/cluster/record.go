package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Version is the format of records this package writes and reads.
const Version = 1

// Bounds on what a record may hold: a record is read from a shared
// filesystem another host writes.
const (
	maxRecordSize = 64 << 10
	maxHolders    = 256
	maxField      = 4096
)

// ErrDamaged is wrapped when a record cannot be read or fails its checks.
var ErrDamaged = errors.New("cluster record damaged")

// Holder is one domain of one host holding a file.
type Holder struct {
	Host   string `json:"host"`   // the host's id (its state directory's host-id)
	Boot   string `json:"boot"`   // that host's boot id when it took the file
	Domain string `json:"domain"` // the domain's name
}

func (h Holder) String() string { return h.Host + "/" + h.Domain }

// Record is what every host knows about one file of a shared filesystem.
type Record struct {
	Version int    `json:"version"`
	Path    string `json:"path"`
	Ino     uint64 `json:"ino"`
	// UID and GID are the owner before any QEMU got the file: what the
	// last host to let go gives back.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// TargetUID and TargetGID are the owner QEMU holds it as.
	TargetUID uint32   `json:"target_uid"`
	TargetGID uint32   `json:"target_gid"`
	Holders   []Holder `json:"holders"`
}

// Key names the record of path in a record directory: the same on every
// host that names the file by the same path.
func Key(path string) string {
	sum := sha256.Sum256([]byte(path))
	return hex.EncodeToString(sum[:]) + ".json"
}

// Others returns the holders that are not of host.
func (r *Record) Others(host string) []Holder {
	var out []Holder
	for _, h := range r.Holders {
		if h.Host != host {
			out = append(out, h)
		}
	}
	return out
}

// Hosts lists the distinct hosts of hs, in order.
func Hosts(hs []Holder) []string {
	var out []string
	for _, h := range hs {
		if !slices.Contains(out, h.Host) {
			out = append(out, h.Host)
		}
	}
	return out
}

// Drop removes the holders for which match is true and reports whether
// any went.
func (r *Record) Drop(match func(Holder) bool) bool {
	n := len(r.Holders)
	r.Holders = slices.DeleteFunc(r.Holders, match)
	return len(r.Holders) != n
}

// Add adds h unless the same host, boot and domain holds it already.
func (r *Record) Add(h Holder) {
	if !slices.Contains(r.Holders, h) {
		r.Holders = append(r.Holders, h)
	}
}

// Clone returns a deep copy.
func (r *Record) Clone() *Record {
	c := *r
	c.Holders = slices.Clone(r.Holders)
	return &c
}

func (r *Record) encode() ([]byte, error) {
	r.Version = Version
	if err := r.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode record of %s: %w", r.Path, err)
	}
	return append(b, '\n'), nil
}

// decode parses a record; anything malformed or out of bounds wraps
// ErrDamaged.
func decode(b []byte) (*Record, error) {
	if len(b) > maxRecordSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrDamaged, maxRecordSize)
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the record", ErrDamaged)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("%w: version %d, this hook reads %d", ErrDamaged, r.Version, Version)
	}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return &r, nil
}

func (r *Record) check() error {
	if !strings.HasPrefix(r.Path, "/") || len(r.Path) > maxField || strings.ContainsRune(r.Path, 0) {
		return fmt.Errorf("path %q is not absolute", r.Path)
	}
	if len(r.Holders) > maxHolders {
		return fmt.Errorf("%d holders, at most %d", len(r.Holders), maxHolders)
	}
	for _, h := range r.Holders {
		for _, s := range []string{h.Host, h.Boot, h.Domain} {
			if s == "" || len(s) > maxField || strings.ContainsAny(s, "\x00\n") {
				return fmt.Errorf("holder %q/%q/%q is malformed", h.Host, h.Boot, h.Domain)
			}
		}
	}
	return nil
}
