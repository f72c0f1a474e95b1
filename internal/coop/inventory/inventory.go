package inventory

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
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

// File is one file as the watcher saw it: its inode and an owner.
type File struct {
	Dir   string `json:"dir"`
	Name  string `json:"name"` // hex: names are bytes, not always UTF-8
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Birth int64  `json:"birth,omitempty"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
}

// Path is the file's path when it was seen.
func (f File) Path() string {
	n, err := hex.DecodeString(f.Name)
	if err != nil {
		return filepath.Join(f.Dir, "?")
	}
	return filepath.Join(f.Dir, string(n))
}

// SameInode reports whether f and g are the same inode.
func (f File) SameInode(g File) bool {
	return f.Dev == g.Dev && f.Ino == g.Ino && (f.Birth == 0 || g.Birth == 0 || f.Birth == g.Birth)
}

// Record says which directories a domain's live operations are likely
// to bring files from, and who its QEMU runs as.
type Record struct {
	Domain  string   `json:"domain"`
	BootID  string   `json:"boot_id"`
	QEMUUID uint32   `json:"qemu_uid"`
	QEMUGID uint32   `json:"qemu_gid"`
	Dirs    []string `json:"dirs"`
	// Held are the files prepare gave the domain's QEMU (its journal
	// records): the watcher need not ask the journal about them.
	Held []string `json:"held,omitempty"`
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

// Stat reads name in dir: ok is false for what is never recorded (hidden
// names, file types that are not images or device nodes, a vanished file).
func Stat(dir, name string) (f File, ok bool) {
	if name == "" || strings.HasPrefix(name, ".") || strings.Contains(name, "/") {
		return File{}, false
	}
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, filepath.Join(dir, name), unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st); err != nil {
		return File{}, false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFBLK, unix.S_IFCHR:
	default:
		return File{}, false
	}
	var birth int64
	if st.Mask&unix.STATX_BTIME != 0 {
		birth = st.Btime.Sec*1e9 + int64(st.Btime.Nsec)
	}
	return File{
		Dir: dir, Name: hex.EncodeToString([]byte(name)),
		Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino, Birth: birth,
		UID: st.Uid, GID: st.Gid,
	}, true
}

// Names lists dir's entries (nil when it cannot be read).
func Names(dir string) []string {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), dir)
	defer func() { _ = f.Close() }() // a directory read from: nothing to lose
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil
	}
	return names
}

func fileFor(stateDir, domain string) string {
	return filepath.Join(stateDir, "inventory", hex.EncodeToString([]byte(domain))+".json")
}

// Save writes the record of its domain, replacing any earlier one
// atomically (a reader sees the old record or the new one). Temporary
// files that killed writers left behind are removed on the way.
func Save(stateDir string, r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return writeAtomic(filepath.Join(stateDir, "inventory"), filepath.Base(fileFor(stateDir, r.Domain)), b)
}

func writeAtomic(dir, name string, b []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	removeDebris(dir)
	tmp, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("inventory: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("inventory: %w", err)
	}
	return nil
}

const tmpPrefix = ".tmp-"

// removeDebris deletes temporary files older than a minute: a writer that
// old was killed before its rename.
func removeDebris(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Load reads the record of domain; (nil, nil) when there is none.
func Load(stateDir, domain string) (*Record, error) {
	b, err := os.ReadFile(fileFor(stateDir, domain))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return Decode(b, domain)
}

// Decode parses a record and checks it belongs to domain.
func Decode(b []byte, domain string) (*Record, error) {
	if len(b) > maxSize {
		return nil, fmt.Errorf("inventory of %s: %d bytes is more than %d", domain, len(b), maxSize)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("inventory of %s: %w", domain, err)
	}
	if r.Domain != domain {
		return nil, fmt.Errorf("inventory of %s names domain %q", domain, r.Domain)
	}
	if len(r.Dirs) > MaxDirs {
		return nil, fmt.Errorf("inventory of %s: %d directories is more than %d", domain, len(r.Dirs), MaxDirs)
	}
	for _, d := range r.Dirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d {
			return nil, fmt.Errorf("inventory of %s: directory %q is not absolute and clean", domain, d)
		}
	}
	if len(r.Held) > MaxFiles {
		return nil, fmt.Errorf("inventory of %s: %d held files is more than %d", domain, len(r.Held), MaxFiles)
	}
	return &r, nil
}

// Remove deletes the record of domain, if any.
func Remove(stateDir, domain string) error {
	err := os.Remove(fileFor(stateDir, domain))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("inventory: %w", err)
	}
	return nil
}

// List reads every record in the state directory. A record that cannot be
// read is an error naming it; the others are still returned.
func List(stateDir string) ([]*Record, error) {
	ents, err := os.ReadDir(filepath.Join(stateDir, "inventory"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var out []*Record
	var errs []error
	for _, e := range ents {
		dom, ok := DomainOf(e.Name())
		if !ok {
			continue
		}
		r, err := Load(stateDir, dom)
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

// DomainOf names the domain whose record is in the inventory directory's
// file name; ok is false for every other file there.
func DomainOf(name string) (string, bool) {
	h, ok := strings.CutSuffix(name, ".json")
	if !ok || name == labelledName {
		return "", false
	}
	dom, err := hex.DecodeString(h)
	if err != nil || len(dom) == 0 {
		return "", false
	}
	return string(dom), true
}

// labelledName is the file the watcher keeps.
const labelledName = "labelled.json"

// Labelled is what the watcher saw while domains ran: files of their
// directories that became QEMU's (or root:root) without the journal
// knowing them, each with the owner it had just before, by path.
type Labelled struct {
	Files map[string]File `json:"files"`
}

// SaveLabelled replaces the watcher's file atomically. Only the watcher
// writes it, so no lock is needed.
func SaveLabelled(stateDir string, l *Labelled) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	dir := filepath.Join(stateDir, "inventory")
	// Never made again once gone: the state directory was removed.
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return writeAtomic(dir, labelledName, b)
}

// RemoveLabelled deletes the watcher's file.
func RemoveLabelled(stateDir string) error {
	err := os.Remove(filepath.Join(stateDir, "inventory", labelledName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("inventory: %w", err)
	}
	return nil
}

// LoadLabelled reads the watcher's file; empty when there is none.
// Entries that do not name a file directly inside an absolute clean
// directory are dropped.
func LoadLabelled(stateDir string) (*Labelled, error) {
	l := &Labelled{Files: map[string]File{}}
	b, err := os.ReadFile(filepath.Join(stateDir, "inventory", labelledName))
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("inventory: %w", err)
	}
	if len(b) > maxSize {
		return l, fmt.Errorf("inventory: %s is %d bytes, more than %d", labelledName, len(b), maxSize)
	}
	if err := json.Unmarshal(b, l); err != nil || l.Files == nil {
		return &Labelled{Files: map[string]File{}}, fmt.Errorf("inventory: %s unreadable: %w", labelledName, err)
	}
	for p, f := range l.Files {
		n, err := hex.DecodeString(f.Name)
		bad := err != nil || len(n) == 0 || strings.ContainsAny(string(n), "/\x00") || string(n) == "." || string(n) == ".."
		if bad || !filepath.IsAbs(f.Dir) || filepath.Clean(f.Dir) != f.Dir || f.Path() != p {
			delete(l.Files, p)
		}
	}
	return l, nil
}

// In returns the labelled files in the record's directories.
func (l *Labelled) In(r *Record) []File {
	if l == nil {
		return nil
	}
	var out []File
	for _, f := range l.Files {
		if r.Covers(f.Dir) {
			out = append(out, f)
		}
	}
	return out
}
