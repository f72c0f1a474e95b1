package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// File is one file whose owner became QEMU's during a run: the inode
// (file handle, generation, birth where there is one), where it was, the
// owner it had just before, and whether libvirt was shown to have made
// the change.
type File struct {
	// Dir is the watched directory it was in; Path its path then.
	Dir  string
	Path string
	ID   owner.Identity
	// UID and GID are the owner before the change.
	UID, GID uint32
	// Proven is set when the process that made the change was libvirt's
	// daemon or a fork of it, alive when the event was read. Only proven
	// changes are given back.
	Proven bool
	// By says who made the change, as far as it could be seen.
	By string
}

type wireFile struct {
	Dir    []byte         `json:"dir"`
	Path   []byte         `json:"path"`
	ID     owner.Identity `json:"id"`
	UID    uint32         `json:"uid"`
	GID    uint32         `json:"gid"`
	Proven bool           `json:"proven,omitempty"`
	By     string         `json:"by,omitempty"`
}

// labelledName is the file the watcher keeps.
const labelledName = "labelled.json"

// Labelled is what the watcher saw while domains ran: files of their
// directories that became QEMU's without the journal knowing them.
type Labelled struct {
	Files []File
}

// SaveLabelled replaces the watcher's file durably. Only the watcher
// writes it, so no lock is needed; it never makes the inventory
// directory again once gone (the state directory was removed).
func SaveLabelled(stateDir string, l *Labelled) error {
	w := make([]wireFile, 0, len(l.Files))
	for _, f := range l.Files {
		w = append(w, wireFile{Dir: []byte(f.Dir), Path: []byte(f.Path), ID: f.ID, UID: f.UID, GID: f.GID, Proven: f.Proven, By: f.By})
	}
	b, err := json.Marshal(struct {
		Files []wireFile `json:"files"`
	}{w})
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return writeDurable(stateDir, labelledName, b, false)
}

// LabelledInode is the device and inode number of the watcher's file, ok
// false when there is none (or no inventory directory): a writer that
// skips rewriting unchanged contents checks that the file it wrote is
// still there.
func LabelledInode(stateDir string) (dev, ino uint64, ok bool) {
	dfd, err := openDir(stateDir, false)
	if err != nil {
		return 0, 0, false
	}
	defer func() { _ = unix.Close(dfd) }() // a directory looked in
	var st unix.Stat_t
	if unix.Fstatat(dfd, labelledName, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, 0, false
	}
	return uint64(st.Dev), st.Ino, true
}

// LoadLabelled reads the watcher's file; empty when there is none.
// Entries whose directory or path is not absolute and clean, or whose
// path is not directly in the directory, are dropped.
func LoadLabelled(stateDir string) (*Labelled, error) {
	l := &Labelled{}
	b, err := readFile(stateDir, labelledName)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("inventory: %w", err)
	}
	var w struct {
		Files []wireFile `json:"files"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return l, fmt.Errorf("inventory: %s unreadable: %w", labelledName, err)
	}
	for _, f := range w.Files {
		dir, p := string(f.Dir), string(f.Path)
		if !absClean(dir) || !absClean(p) || filepath.Dir(p) != dir {
			continue
		}
		l.Files = append(l.Files, File{Dir: dir, Path: p, ID: f.ID, UID: f.UID, GID: f.GID, Proven: f.Proven, By: f.By})
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
