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

// Bounds on what one record may hold, so a directory with a million
// files costs a bounded prepare and a bounded file.
const (
	MaxDirs  = 64
	MaxFiles = 10000
	// maxSize bounds the record file read back.
	maxSize = 8 << 20
)

// File is one file found at prepare, with its owner then.
type File struct {
	Dir   string `json:"dir"`
	Name  string `json:"name"` // hex: names are bytes, not always UTF-8
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Birth int64  `json:"birth,omitempty"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
}

// Path is the file's path when the record was taken.
func (f File) Path() string {
	n, err := hex.DecodeString(f.Name)
	if err != nil {
		return filepath.Join(f.Dir, "?")
	}
	return filepath.Join(f.Dir, string(n))
}

// Record is what one domain's prepare found.
type Record struct {
	Domain string `json:"domain"`
	BootID string `json:"boot_id"`
	// QEMU is the uid:gid the domain's QEMU ran as: files found owned by
	// it tell nothing and are not recorded.
	QEMUUID uint32 `json:"qemu_uid"`
	QEMUGID uint32 `json:"qemu_gid"`
	Files   []File `json:"files"`
	// Dirs are the directories the record covers; the watcher keeps
	// their files' owners current while the domain runs.
	Dirs []string `json:"dirs,omitempty"`
	// Truncated says MaxFiles was reached: later files are unknown.
	Truncated bool `json:"truncated,omitempty"`
}

// Take reads dirs (each once, not recursively) and records every regular
// file and block or character device not owned by uid:gid, and not hidden.
// A directory that cannot be read is skipped: the record only ever adds
// knowledge.
func Take(domain, boot string, uid, gid uint32, dirs []string) *Record {
	r := &Record{Domain: domain, BootID: boot, QEMUUID: uid, QEMUGID: gid}
	seen := map[string]bool{}
	for _, d := range dirs {
		if len(seen) >= MaxDirs || seen[d] || !filepath.IsAbs(d) {
			continue
		}
		seen[d] = true
		r.Dirs = append(r.Dirs, d)
		if !r.takeDir(d) {
			return r
		}
	}
	return r
}

// takeDir records one directory; false means the record is full.
func (r *Record) takeDir(dir string) bool {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return true
	}
	f := os.NewFile(uintptr(fd), dir)
	defer func() { _ = f.Close() }() // a directory read from: nothing to lose
	names, err := f.Readdirnames(-1)
	if err != nil {
		return true
	}
	for _, n := range names {
		if strings.HasPrefix(n, ".") {
			continue
		}
		var st unix.Statx_t
		if err := unix.Statx(fd, n, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st); err != nil {
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFBLK, unix.S_IFCHR:
		default:
			continue
		}
		if st.Uid == r.QEMUUID && st.Gid == r.QEMUGID {
			continue
		}
		if len(r.Files) >= MaxFiles {
			r.Truncated = true
			return false
		}
		r.Files = append(r.Files, fileOf(dir, n, &st))
	}
	return true
}

func fileOf(dir, name string, st *unix.Statx_t) File {
	var birth int64
	if st.Mask&unix.STATX_BTIME != 0 {
		birth = st.Btime.Sec*1e9 + int64(st.Btime.Nsec)
	}
	return File{
		Dir: dir, Name: hex.EncodeToString([]byte(name)),
		Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino, Birth: birth,
		UID: st.Uid, GID: st.Gid,
	}
}

// Stat reads name in dir as Take would record it. ok is false for what
// Take skips: hidden names, other file types, files owned by uid:gid.
func Stat(dir, name string, uid, gid uint32) (f File, ok bool) {
	if strings.HasPrefix(name, ".") || strings.Contains(name, "/") {
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
	if st.Uid == uid && st.Gid == gid {
		return File{}, false
	}
	return fileOf(dir, name, &st), true
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
	p := fileFor(stateDir, domain)
	b, err := os.ReadFile(p)
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
	if len(r.Files) > MaxFiles {
		return nil, fmt.Errorf("inventory of %s: %d files is more than %d", domain, len(r.Files), MaxFiles)
	}
	for _, f := range r.Files {
		if !filepath.IsAbs(f.Dir) || filepath.Clean(f.Dir) != f.Dir {
			return nil, fmt.Errorf("inventory of %s: directory %q is not absolute and clean", domain, f.Dir)
		}
		n, err := hex.DecodeString(f.Name)
		if err != nil || len(n) == 0 || strings.ContainsAny(string(n), "/\x00") || string(n) == "." || string(n) == ".." {
			return nil, fmt.Errorf("inventory of %s: bad file name %q", domain, f.Name)
		}
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
	dir := filepath.Join(stateDir, "inventory")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var out []*Record
	var errs []error
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, tmpPrefix) || e.Name() == observedName {
			continue
		}
		dom, err := hex.DecodeString(name)
		if err != nil {
			continue
		}
		r, err := Load(stateDir, string(dom))
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

// observedName is the file the watcher keeps: owners of files seen
// appearing or changing in inventoried directories while domains ran.
const observedName = "observed.json"

// Observed is what the watcher saw, by path.
type Observed struct {
	Files map[string]File `json:"files"`
}

// SaveObserved replaces the watcher's file atomically. Only the watcher
// writes it, so no lock is needed.
func SaveObserved(stateDir string, o *Observed) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return writeAtomic(filepath.Join(stateDir, "inventory"), observedName, b)
}

// LoadObserved reads the watcher's file; empty when there is none.
func LoadObserved(stateDir string) (*Observed, error) {
	o := &Observed{Files: map[string]File{}}
	b, err := os.ReadFile(filepath.Join(stateDir, "inventory", observedName))
	if errors.Is(err, fs.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("inventory: %w", err)
	}
	if len(b) > maxSize {
		return o, fmt.Errorf("inventory: %s is %d bytes, more than %d", observedName, len(b), maxSize)
	}
	if err := json.Unmarshal(b, o); err != nil {
		return &Observed{Files: map[string]File{}}, fmt.Errorf("inventory: %s: %w", observedName, err)
	}
	for p, f := range o.Files {
		if f.Path() != p || !filepath.IsAbs(f.Dir) || filepath.Clean(f.Dir) != f.Dir {
			delete(o.Files, p)
		}
	}
	return o, nil
}

// With returns the record's files with what the watcher saw in the
// record's directories: a newer owner of the same name replaces the one
// taken at prepare.
func (r *Record) With(o *Observed) []File {
	if o == nil || len(o.Files) == 0 {
		return r.Files
	}
	dirs := map[string]bool{}
	for _, d := range r.Dirs {
		dirs[d] = true
	}
	out := make([]File, 0, len(r.Files))
	seen := map[string]bool{}
	for _, f := range r.Files {
		p := f.Path()
		seen[p] = true
		if g, ok := o.Files[p]; ok && (g.UID != r.QEMUUID || g.GID != r.QEMUGID) {
			f = g
		}
		out = append(out, f)
	}
	for p, g := range o.Files {
		if !seen[p] && dirs[g.Dir] && (g.UID != r.QEMUUID || g.GID != r.QEMUGID) {
			out = append(out, g)
		}
	}
	return out
}
