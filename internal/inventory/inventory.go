package inventory

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
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

func nameFor(domain string) string { return hex.EncodeToString([]byte(domain)) + ".json" }

// invDir opens the state directory's inventory/ (making it first when
// create is set) without following a symlink at that name, so every
// record is written, read and removed through that one descriptor with
// *at calls and O_NOFOLLOW: a link planted at STATE/inventory, or at a
// record's name, never redirects a write. The error wraps
// fs.ErrNotExist when the directory is not there.
func invDir(stateDir string, create bool) (*os.File, error) {
	if create {
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
	}
	sfd, err := unix.Open(stateDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("inventory: open %s: %w", stateDir, err)
	}
	defer func() { _ = unix.Close(sfd) }() // a directory: nothing to lose
	if create {
		if err := unix.Mkdirat(sfd, "inventory", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("inventory: make %s: %w", filepath.Join(stateDir, "inventory"), err)
		}
	}
	p := filepath.Join(stateDir, "inventory")
	fd, err := unix.Openat(sfd, "inventory", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("inventory: %s is not a directory (a symlink?): refusing to follow it: %w", p, err)
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: open %s: %w", p, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// readAt reads name in dir, not following a symlink there.
func readAt(dir *os.File, name string) ([]byte, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name))
	defer func() { _ = f.Close() }() // read only
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", f.Name())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err == nil && len(b) > maxSize {
		err = fmt.Errorf("%s is more than %d bytes", f.Name(), maxSize)
	}
	return b, err
}

// removeAt removes name in dir; a missing one is not an error.
func removeAt(dir *os.File, name string) error {
	if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("inventory: remove %s: %w", filepath.Join(dir.Name(), name), err)
	}
	return nil
}

// Save writes the record of its domain, replacing any earlier one
// atomically (a reader sees the old record or the new one). Temporary
// files that killed writers left behind are removed on the way.
func Save(stateDir string, r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	dir, err := invDir(stateDir, true)
	if err != nil {
		return err
	}
	defer func() { _ = dir.Close() }() // a directory: nothing to lose
	return writeAtomic(dir, nameFor(r.Domain), b)
}

func writeAtomic(dir *os.File, name string, b []byte) error {
	removeDebris(dir)
	dfd := int(dir.Fd())
	var tmp string
	var fd int
	for i := 0; ; i++ {
		tmp = fmt.Sprintf("%s%d-%d", tmpPrefix, os.Getpid(), time.Now().UnixNano()+int64(i))
		var err error
		fd, err = unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) || i > 100 {
			return fmt.Errorf("inventory: create in %s: %w", dir.Name(), err)
		}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), tmp))
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("inventory: %w", err)
	}
	// renameat replaces whatever is at name, a symlink included, and
	// never follows it.
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("inventory: rename to %s: %w", filepath.Join(dir.Name(), name), err)
	}
	return nil
}

const tmpPrefix = ".tmp-"

// removeDebris deletes temporary files older than a minute: a writer that
// old was killed before its rename.
func removeDebris(dir *os.File) {
	names, err := dirNames(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		if !strings.HasPrefix(n, tmpPrefix) {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(int(dir.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && time.Since(time.Unix(st.Mtim.Unix())) > time.Minute {
			_ = unix.Unlinkat(int(dir.Fd()), n, 0) // best effort: retried by the next writer
		}
	}
}

// dirNames lists dir from its start, through a descriptor of its own so
// dir's offset stays put for the next listing.
func dirNames(dir *os.File) ([]string, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), dir.Name())
	defer func() { _ = f.Close() }() // a directory read from: nothing to lose
	return f.Readdirnames(-1)
}

// Load reads the record of domain; (nil, nil) when there is none.
func Load(stateDir, domain string) (*Record, error) {
	dir, err := invDir(stateDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = dir.Close() }() // a directory: nothing to lose
	return loadAt(dir, domain)
}

func loadAt(dir *os.File, domain string) (*Record, error) {
	b, err := readAt(dir, nameFor(domain))
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
	dir, err := invDir(stateDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = dir.Close() }() // a directory: nothing to lose
	return removeAt(dir, nameFor(domain))
}

// List reads every record in the state directory. A record that cannot be
// read is an error naming it; the others are still returned.
func List(stateDir string) ([]*Record, error) {
	dir, err := invDir(stateDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = dir.Close() }() // a directory: nothing to lose
	names, err := dirNames(dir)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	sort.Strings(names)
	var out []*Record
	var errs []error
	for _, n := range names {
		dom, ok := DomainOf(n)
		if !ok {
			continue
		}
		r, err := loadAt(dir, dom)
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
	// Never made again once gone: the state directory was removed.
	dir, err := invDir(stateDir, false)
	if err != nil {
		return err
	}
	defer func() { _ = dir.Close() }() // a directory: nothing to lose
	return writeAtomic(dir, labelledName, b)
}

// RemoveLabelled deletes the watcher's file.
func RemoveLabelled(stateDir string) error {
	dir, err := invDir(stateDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = dir.Close() }() // a directory: nothing to lose
	return removeAt(dir, labelledName)
}

// LoadLabelled reads the watcher's file; empty when there is none.
// Entries that do not name a file directly inside an absolute clean
// directory are dropped.
func LoadLabelled(stateDir string) (*Labelled, error) {
	l := &Labelled{Files: map[string]File{}}
	dir, err := invDir(stateDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, err
	}
	defer func() { _ = dir.Close() }() // a directory: nothing to lose
	b, err := readAt(dir, labelledName)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("inventory: %w", err)
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
