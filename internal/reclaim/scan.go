package reclaim

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// Scan walks each root and returns the regular files and block devices
// owned by uid (QEMU's user), with what libvirt's xattrs and their
// directory say, and notes on what it did not look at.
//
// A root is resolved once (an admin may name a symlink such as a pool's
// target); below it no symlink is followed, and directories on another
// filesystem (a mount point, a bind mount) and hidden entries (a name
// starting with ".": .snapshot, .Trash, editors' and tools' temporary
// files) are skipped, as are lost+found directories. A root given
// explicitly is examined whatever its name; to reach a mount below a
// root, name it as a root too. A root that does not exist is a note,
// not an error.
func Scan(roots []string, uid uint32) ([]File, []string, error) {
	var files []File
	var notes []string
	seen := make(map[owner.ID]bool)
	for _, root := range roots {
		found, ns, err := scanRoot(root, uid, seen)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, found...)
		notes = append(notes, ns...)
	}
	return files, notes, nil
}

func scanRoot(root string, uid uint32, seen map[owner.ID]bool) ([]File, []string, error) {
	if !filepath.IsAbs(root) {
		return nil, nil, fmt.Errorf("%s: path is not absolute", root)
	}
	resolved, err := filepath.EvalSymlinks(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, []string{root + ": does not exist"}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("resolve %s: %w", root, err)
	}
	var rst unix.Stat_t
	if err := unix.Lstat(resolved, &rst); err != nil {
		return nil, nil, fmt.Errorf("stat %s: %w", resolved, err)
	}
	var files []File
	var notes []string
	err = filepath.WalkDir(resolved, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: %s", p, err))
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		if p != resolved && (strings.HasPrefix(name, ".") || (d.IsDir() && name == "lost+found")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			notes = append(notes, fmt.Sprintf("%s: %s", p, err))
			return nil
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if st.Dev != rst.Dev {
				notes = append(notes, p+": another filesystem, not entered (name it to reclaim there)")
				return filepath.SkipDir
			}
			return nil
		case unix.S_IFREG, unix.S_IFBLK:
		default:
			return nil
		}
		if st.Uid != uid {
			return nil
		}
		k := owner.ID{Dev: st.Dev, Ino: st.Ino}
		if seen[k] {
			return nil
		}
		seen[k] = true
		f, err := inspect(p)
		if err != nil {
			notes = append(notes, err.Error())
			return nil
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("walk %s: %w", resolved, err)
	}
	return files, notes, nil
}

// inspect reads one file's facts through a handle.
func inspect(p string) (File, error) {
	h, err := owner.Open(p)
	if err != nil {
		return File{}, err
	}
	defer func() { _ = h.Close() }()
	return Inspect(h)
}

// Inspect reads the facts of the inode h holds: its owner, libvirt's
// xattrs, and the owner of the directory its path is in.
func Inspect(h *owner.Handle) (File, error) {
	if err := h.Refresh(); err != nil {
		return File{}, err
	}
	f := File{Path: h.Path, Dev: uint64(h.Stat.Dev), Ino: h.Stat.Ino, Nlink: uint64(h.Stat.Nlink), Kind: Regular}
	if h.Stat.Mode&unix.S_IFMT == unix.S_IFBLK {
		f.Kind = Block
	}
	f.Owner.UID, f.Owner.GID = h.Owner()
	for _, x := range []struct {
		name string
		dst  *string
	}{{XattrDAC, &f.Label}, {XattrRefDAC, &f.Refs}} {
		v, ok, err := h.GetXattr(x.name)
		if err != nil {
			return File{}, err
		}
		if ok {
			*x.dst = string(v)
		}
	}
	var dst unix.Stat_t
	dir := filepath.Dir(h.Path)
	if err := unix.Stat(dir, &dst); err != nil {
		return File{}, fmt.Errorf("stat %s: %w", dir, err)
	}
	f.Dir = owner.UIDGID{UID: dst.Uid, GID: dst.Gid}
	return f, nil
}
