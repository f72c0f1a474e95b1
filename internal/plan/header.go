package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// Bounds on what an image header (which QEMU can rewrite) can make the
// hook do. They are far above what real images need and low enough that a
// forged header cannot make prepare open, record and chown without end.
const (
	// MaxFilesPerImage bounds the files one image header names (VMDK
	// extents, plus a qcow2 data file and a backing file). A 2 TiB
	// twoGbMaxExtentSparse/Flat disk, the largest VMDK splits, has
	// 1,024 extents.
	MaxFilesPerImage = 1024
	// MaxFilesPerDomain bounds the steps (files and directories) of one
	// plan.
	MaxFilesPerDomain = 4096
	// MaxPathBytesPerDomain bounds the path and element text of all steps
	// of a plan together: what the journal has to record for it.
	MaxPathBytesPerDomain = 1 << 20
	// MaxPathLen and MaxNameLen are the kernel's PATH_MAX (with its NUL)
	// and NAME_MAX: a longer name is one QEMU cannot open either.
	MaxPathLen = unix.PathMax - 1
	MaxNameLen = 255
)

// DefaultBackingDirs are libvirt's own image directories: header-named
// files may be below them when backing_paths is not set.
var DefaultBackingDirs = []string{"/var/lib/libvirt/images"}

// OwnerCheck holds every input of the owner rule for one header-named
// file, so that the plan and prepare (again, under the journal's lock) make
// the same decision with Judge: the owners the plan saw, whether the file is
// a backing file, and the exemptions (backing_any_owner, a directory only
// root can write).
type OwnerCheck struct {
	File  owner.ID // the header-named file
	Namer owner.ID // the image whose header named it
	// FileUID and NamerUID are the owners at plan time: the journal's
	// record when the plan had one (Recorded), else the current owner.
	FileUID, NamerUID           uint32
	FileRecorded, NamerRecorded bool
	// Target is QEMU's uid for the file.
	Target uint32
	// Backing is set for a backing file, which QEMU opens read-only: only
	// those may use the AdminDir exemption. Data files and VMDK extents,
	// which QEMU writes, always need the owner rule.
	Backing bool
	// AnyOwner is set when owners do not matter (backing_any_owner).
	AnyOwner bool
	// AdminDir is the file's directory when only root can write it (the
	// admin's own store, where shared templates live), else "".
	AdminDir string
	// Path and NamerPath are for messages.
	Path, NamerPath string
}

// Judge applies the owner rule with recorded's answers (the journal's
// original owners) overriding the owners the plan saw; recorded may be nil.
// It returns the refusal prepare must fail with, or nil. The plan calls it
// with what it knows; prepare calls it again under the journal's lock, where
// another domain's record may have appeared: the same function, the same
// exemptions.
func (c *OwnerCheck) Judge(recorded func(dev, ino uint64) (uid, gid uint32, ok bool)) error {
	if c == nil || c.AnyOwner {
		return nil
	}
	fileUID, namerUID := c.FileUID, c.NamerUID
	if recorded != nil {
		if u, _, ok := recorded(c.File.Dev, c.File.Ino); ok {
			fileUID = u
		}
		if u, _, ok := recorded(c.Namer.Dev, c.Namer.Ino); ok {
			namerUID = u
		}
	}
	if fileUID == 0 || fileUID == c.Target || fileUID == namerUID {
		return nil
	}
	if c.Backing && c.AdminDir != "" {
		return nil
	}
	return fmt.Errorf("image header of %s names %s, owned by uid %d: neither root, the QEMU user (uid %d) nor uid %d, the owner of the image naming it; "+
		"keep shared base images in a directory only root can write (such as /var/lib/libvirt/images), `chown` the file, or set backing_any_owner = 1 in the hook's config: %w",
		c.NamerPath, c.Path, fileUID, c.Target, namerUID, owner.ErrRefused)
}

// settled reports whether no journal record can change Judge's answer
// from what the owners at plan time give, so the directory need not be
// examined. A file the journal holds is owned by its target (QEMU) now, so
// a root-owned file has no record to override its owner (QEMU running as
// root gets nothing from the hook, so no target is root); a file owned by
// its namer's owner, neither of them QEMU, likewise.
func (c *OwnerCheck) settled() bool {
	return c.FileUID == 0 || (c.FileUID == c.NamerUID && c.FileUID != c.Target)
}

// originalUID is who owned the inode h holds before the hook changed it:
// the journal's record when there is one, else its current owner.
func (b *builder) originalUID(h *owner.Handle) (uint32, bool) {
	if b.env.RecordedOwner != nil {
		id := h.ID()
		if u, _, ok := b.env.RecordedOwner(id.Dev, id.Ino); ok {
			return u, true
		}
	}
	uid, _ := h.Owner()
	return uid, false
}

// checkHeaderNamed applies the rules for files named by an image header
// rather than by the XML. Headers are writable by QEMU, so the file must
//   - be what QEMU opens as an image: a regular file nobody may execute,
//     neither setuid nor setgid;
//   - lie where images are: in backing_paths when that is set, otherwise
//     in the naming image's own directory or below libvirt's image
//     directories (DefaultBackingDirs and the targets of dir, fs and
//     netfs pools), never under a hidden name;
//   - be owned by root, the QEMU user or the (original) owner of the
//     naming image, unless it is a backing file (which QEMU opens
//     read-only) in a directory only root can write (the admin's own
//     store, where shared templates live) or backing_any_owner is set.
//     Data files and VMDK extents, which QEMU writes, always need the
//     owner rule.
//
// Without the place rule a rewritten header could name any root-owned
// file (/root/.bashrc) and get it chowned to QEMU.
func (b *builder) checkHeaderNamed(h *owner.Handle, parent *Step, backing bool) (*OwnerCheck, error) {
	mode := h.Stat.Mode
	if mode&unix.S_IFMT == unix.S_IFREG && mode&(0o111|unix.S_ISUID|unix.S_ISGID) != 0 {
		return nil, fmt.Errorf("image header of %s names %s, mode %04o: an image QEMU opens is never executable, setuid or setgid; `chmod a-x,ug-s %s` if it really is an image: %w",
			parent.Path, h.Path, mode&0o7777, h.Path, owner.ErrRefused)
	}
	if err := b.checkPlace(h.Path, parent); err != nil {
		return nil, err
	}
	c := &OwnerCheck{File: h.ID(), Path: h.Path, NamerPath: parent.Path}
	if parent.Target != nil {
		c.Target = parent.Target.UID
	}
	c.FileUID, c.FileRecorded = b.originalUID(h)
	if parent.Handle != nil {
		c.Namer = parent.Handle.ID()
		c.NamerUID, c.NamerRecorded = b.originalUID(parent.Handle)
	} else if parent.Current != nil {
		c.NamerUID = parent.Current.UID
	}
	c.Backing = backing
	c.AnyOwner = b.env.AnyBackingOwner
	if backing && !c.AnyOwner && !c.settled() {
		c.AdminDir, _ = adminDir(h)
	}
	if err := c.Judge(b.env.RecordedOwner); err != nil {
		return nil, err
	}
	return c, nil
}

// checkPlace applies the place rule of checkHeaderNamed to the canonical
// path p named by parent's header.
func (b *builder) checkPlace(p string, parent *Step) error {
	if len(b.env.BackingPaths) > 0 {
		if !under(p, b.env.BackingPaths) {
			return fmt.Errorf("image header of %s names %s, outside backing_paths; add its directory to backing_paths in %s if it is a real backing file: %w",
				parent.Path, p, b.configName(), owner.ErrRefused)
		}
		return nil
	}
	if hidden(filepath.Base(p)) {
		return fmt.Errorf("image header of %s names %s, a hidden file, which is never an image; rename it if it really is one (`qemu-img rebase -u` the overlay to the new name): %w", parent.Path, p, owner.ErrRefused)
	}
	if dir := filepath.Dir(p); dir == filepath.Dir(parent.Path) && imageDirOK(dir) {
		return nil
	}
	dirs := append(slices.Clone(DefaultBackingDirs), b.pools()...)
	if below(p, dirs) {
		return nil
	}
	return fmt.Errorf("image header of %s names %s, which is neither in the directory of the image naming it nor below %s (hidden files excluded); "+
		"list its directory in backing_paths in %s if it is a real backing file: %w",
		parent.Path, p, strings.Join(dirs, ", "), b.configName(), owner.ErrRefused)
}

func (b *builder) configName() string {
	if b.env.Policy.ConfigPath == "" {
		return "the hook's config"
	}
	return b.env.Policy.ConfigPath
}

// imageDirOK says whether an image's own directory may hold what its
// header names. Directories that hold other things than images never do:
// "/", root's home, and sticky world-writable ones (/tmp, /var/tmp,
// /dev/shm), where anyone could have put what a forged header names.
func imageDirOK(dir string) bool {
	if dir == "/" || dir == "/root" {
		return false
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false
	}
	return !(st.Mode&unix.S_ISVTX != 0 && st.Mode&0o002 != 0)
}

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// below reports whether p is in or below one of dirs without passing
// through a hidden name: an image directory that is also someone's home
// holds .bashrc and .ssh/authorized_keys, which no header may name.
func below(p string, dirs []string) bool {
	for _, d := range dirs {
		rel, err := filepath.Rel(d, p)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		if !slices.ContainsFunc(strings.Split(rel, "/"), hidden) {
			return true
		}
	}
	return false
}

// pools lists the canonical target directories of libvirt's dir, fs and
// netfs storage pools (their persistent definitions in PoolDir).
func (b *builder) pools() []string {
	if b.poolsRead || b.env.PoolDir == "" {
		return b.poolDirs
	}
	b.poolsRead = true
	files, _ := filepath.Glob(filepath.Join(b.env.PoolDir, "*.xml"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var pool libvirtxml.StoragePool
		if pool.Unmarshal(string(data)) != nil || pool.Target == nil || !filepath.IsAbs(pool.Target.Path) {
			continue
		}
		switch pool.Type {
		case "dir", "fs", "netfs":
		default:
			continue
		}
		canon, err := filepath.EvalSymlinks(pool.Target.Path)
		if err != nil || canon == "/" || slices.Contains(b.poolDirs, canon) {
			continue
		}
		b.poolDirs = append(b.poolDirs, canon)
	}
	return b.poolDirs
}

// adminDir reports whether the file h holds is in a directory only root
// can write: owned by root, writable by neither group nor others, no ACL
// entry granting anyone else write. Whatever is there the admin put there,
// so images in it may have any owner (a shared template owned by another
// account than its overlays).
func adminDir(h *owner.Handle) (string, bool) {
	dir := filepath.Dir(h.Path)
	dh, err := owner.Open(dir)
	if err != nil {
		return "", false
	}
	defer dh.Close()
	st := dh.Stat
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 || len(dh.Links) > 0 {
		return "", false
	}
	a, err := acl.Get(dh.Fd(), st.Mode)
	if err != nil {
		return "", false
	}
	mask := a.GroupClass()
	for _, e := range a {
		switch e.Tag {
		case acl.User:
			if e.ID != 0 && e.Perm&mask&acl.Write != 0 {
				return "", false
			}
		case acl.Group, acl.GroupObj:
			if e.Perm&mask&acl.Write != 0 {
				return "", false
			}
		case acl.Other:
			if e.Perm&acl.Write != 0 {
				return "", false
			}
		}
	}
	// The file must still be in that directory: it was opened by path
	// before the directory was.
	var fst unix.Stat_t
	if err := unix.Fstatat(dh.Fd(), filepath.Base(h.Path), &fst, unix.AT_SYMLINK_NOFOLLOW); err != nil || fst.Dev != h.Stat.Dev || fst.Ino != h.Stat.Ino {
		return "", false
	}
	return dir, true
}

// countStep applies the per-domain bounds before st is added.
func (b *builder) countStep(st *Step) error {
	if len(b.plan.Steps) >= MaxFilesPerDomain {
		return fmt.Errorf("domain %s: more than %d files and directories to hand to QEMU; a forged image header (VMDK extents) can do this: check the images, or split the domain's storage: %w",
			b.plan.Domain, MaxFilesPerDomain, owner.ErrRefused)
	}
	b.pathBytes += len(st.Path) + len(st.From)
	if b.pathBytes > MaxPathBytesPerDomain {
		return fmt.Errorf("domain %s: the names of its files exceed %d bytes together; a forged image header (VMDK extents) can do this: check the images, or use shorter paths: %w",
			b.plan.Domain, MaxPathBytesPerDomain, owner.ErrRefused)
	}
	return nil
}

// checkHeaderName bounds one name an image header gave, as joined to the
// naming image's path: no longer than PATH_MAX, no component longer than
// NAME_MAX.
func (b *builder) checkHeaderName(namer, joined string) error {
	if len(joined) > MaxPathLen {
		return fmt.Errorf("domain %s: image header of %s names a path of %d bytes, longer than PATH_MAX (%d), which QEMU cannot open either; fix the header (`qemu-img rebase -u`): %w",
			b.plan.Domain, namer, len(joined), MaxPathLen, owner.ErrRefused)
	}
	for _, c := range strings.Split(joined, "/") {
		if len(c) > MaxNameLen {
			return fmt.Errorf("domain %s: image header of %s names a file with a %d-byte component, longer than NAME_MAX (%d), which QEMU cannot open either; fix the header (`qemu-img rebase -u`): %w",
				b.plan.Domain, namer, len(c), MaxNameLen, owner.ErrRefused)
		}
	}
	return nil
}
