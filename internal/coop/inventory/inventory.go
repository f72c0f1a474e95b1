package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// Bounds on what the records may hold, so a directory with a million
// files costs a bounded watcher and bounded files.
const (
	MaxDirs = 64
	// MaxFiles bounds the files the watcher follows in one directory and
	// the labelled files it keeps.
	MaxFiles = 10000
	// maxSize bounds a record file read back.
	maxSize = 8 << 20
)

// Record says which directories a domain's live operations are likely
// to bring files from, and who its QEMU runs as.
type Record struct {
	// Domain is the domain's name, any bytes (libvirt accepts names that
	// are not UTF-8).
	Domain string
	BootID string
	// Gen tells one record of a domain from the next: prepare's handshake
	// with the watcher names it.
	Gen     int64
	QEMUUID uint32
	QEMUGID uint32
	Dirs    []string
	// Held are the files prepare gave the domain's QEMU (its journal
	// records): the watcher need not ask the journal about them.
	Held []string
}

// wireRecord is a Record on disk: names and paths as bytes (base64), so
// that no byte of them is lost to JSON's UTF-8.
type wireRecord struct {
	Domain  []byte   `json:"domain"`
	BootID  string   `json:"boot_id"`
	Gen     int64    `json:"gen"`
	QEMUUID uint32   `json:"qemu_uid"`
	QEMUGID uint32   `json:"qemu_gid"`
	Dirs    [][]byte `json:"dirs"`
	Held    [][]byte `json:"held,omitempty"`
}

// New makes the record of a domain: dirs deduplicated, absolute and clean
// ones only, at most MaxDirs.
func New(domain, boot string, uid, gid uint32, dirs []string) *Record {
	r := &Record{Domain: domain, BootID: boot, QEMUUID: uid, QEMUGID: gid}
	seen := map[string]bool{}
	for _, d := range dirs {
		if len(r.Dirs) >= MaxDirs || seen[d] || !filepath.IsAbs(d) || filepath.Clean(d) != d {
			continue
		}
		seen[d] = true
		r.Dirs = append(r.Dirs, d)
	}
	return r
}

// Covers reports whether dir is one of the record's directories.
func (r *Record) Covers(dir string) bool {
	for _, d := range r.Dirs {
		if d == dir {
			return true
		}
	}
	return false
}

// recordSuffix ends every record's file name.
const recordSuffix = ".rec"

// NameOf is the file name of domain's record: a digest of the name's
// bytes, so any name libvirt accepts fits NAME_MAX and no byte of it
// reaches the filesystem.
func NameOf(domain string) string {
	sum := sha256.Sum256([]byte(domain))
	return hex.EncodeToString(sum[:16]) + recordSuffix
}

// IsRecordName reports whether a file name in the inventory directory is
// a record's.
func IsRecordName(name string) bool {
	h, ok := strings.CutSuffix(name, recordSuffix)
	if !ok || len(h) != 32 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// Save writes the record of its domain durably, replacing any earlier one
// atomically (a reader, or a boot after a crash, finds the old record or
// the new one, whole).
func Save(stateDir string, r *Record) error {
	w := wireRecord{Domain: []byte(r.Domain), BootID: r.BootID, Gen: r.Gen, QEMUUID: r.QEMUUID, QEMUGID: r.QEMUGID}
	for _, d := range r.Dirs {
		w.Dirs = append(w.Dirs, []byte(d))
	}
	for _, p := range r.Held {
		w.Held = append(w.Held, []byte(p))
	}
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return writeDurable(stateDir, NameOf(r.Domain), b, true)
}

// Load reads the record of domain; (nil, nil) when there is none.
func Load(stateDir, domain string) (*Record, error) {
	r, err := LoadName(stateDir, NameOf(domain))
	if err != nil || r == nil {
		return r, err
	}
	if r.Domain != domain {
		return nil, fmt.Errorf("inventory record %s names domain %q, not %q", NameOf(domain), r.Domain, domain)
	}
	return r, nil
}

// LoadName reads the record filed under name; (nil, nil) when there is
// none.
func LoadName(stateDir, name string) (*Record, error) {
	if !IsRecordName(name) {
		return nil, fmt.Errorf("inventory: %q is not a record's name", name)
	}
	b, err := readFile(stateDir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	r, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("inventory record %s: %w", name, err)
	}
	if NameOf(r.Domain) != name {
		return nil, fmt.Errorf("inventory record %s is filed under another domain's name", name)
	}
	return r, nil
}

// Decode parses a record and checks what it may hold.
func Decode(b []byte) (*Record, error) {
	if len(b) > maxSize {
		return nil, fmt.Errorf("%d bytes is more than %d", len(b), maxSize)
	}
	if len(b) == 0 {
		return nil, errors.New("empty (cut short by a crash?)")
	}
	var w wireRecord
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	if len(w.Domain) == 0 {
		return nil, errors.New("names no domain")
	}
	if len(w.Dirs) > MaxDirs {
		return nil, fmt.Errorf("%d directories is more than %d", len(w.Dirs), MaxDirs)
	}
	if len(w.Held) > MaxFiles {
		return nil, fmt.Errorf("%d held files is more than %d", len(w.Held), MaxFiles)
	}
	r := &Record{Domain: string(w.Domain), BootID: w.BootID, Gen: w.Gen, QEMUUID: w.QEMUUID, QEMUGID: w.QEMUGID}
	for _, d := range w.Dirs {
		if !absClean(string(d)) {
			return nil, fmt.Errorf("directory %q is not absolute and clean", d)
		}
		r.Dirs = append(r.Dirs, string(d))
	}
	for _, p := range w.Held {
		r.Held = append(r.Held, string(p))
	}
	return r, nil
}

func absClean(p string) bool {
	return filepath.IsAbs(p) && filepath.Clean(p) == p && !strings.ContainsRune(p, 0)
}

// Remove deletes the record of domain, if any, durably.
func Remove(stateDir, domain string) error {
	return removeFile(stateDir, NameOf(domain))
}

// List reads every record in the state directory. A record that cannot be
// read (damaged, cut short) is named in the error and skipped; every
// other record is still returned.
func List(stateDir string) ([]*Record, error) {
	dfd, err := openDir(stateDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	names := namesAt(dfd)
	_ = unix.Close(dfd) // read only
	var out []*Record
	var errs []error
	for _, n := range names {
		if !IsRecordName(n) {
			continue
		}
		r, err := LoadName(stateDir, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, errors.Join(errs...)
}

// Names lists dir's entries (nil when it cannot be read), following no
// link at dir itself.
func Names(dir string) []string {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil
	}
	defer func() { _ = unix.Close(fd) }()
	return namesAt(fd)
}

// Identify is the File of the inode h holds, seen in the watched
// directory dir, with h's current owner as the owner before.
func Identify(h *owner.Handle, dir string) (File, error) {
	id, err := h.Identity()
	if err != nil {
		return File{}, err
	}
	uid, gid := h.Owner()
	return File{Dir: dir, Path: h.Path, ID: id, UID: uid, GID: gid}, nil
}
