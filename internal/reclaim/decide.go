package reclaim

import (
	"fmt"
	"strings"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/remembered"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// libvirt's remember_owner xattrs, as Scan reports and Decide judges them.
const (
	XattrDAC       = remembered.XattrDAC
	XattrRefDAC    = remembered.XattrRefDAC
	XattrTimestamp = remembered.XattrTimestamp
)

// Root is root:root, what a file gets back when nothing records its owner.
var Root = owner.UIDGID{}

// Kind is what a file is.
type Kind string

// Kinds Scan reports.
const (
	Regular Kind = "file"
	Block   Kind = "block"
)

// File is what Scan found out about one inode owned by QEMU's user.
type File struct {
	Path  string       `json:"path"`
	Kind  Kind         `json:"kind"`
	Dev   uint64       `json:"dev"`
	Ino   uint64       `json:"ino"`
	Owner owner.UIDGID `json:"owner"`
	Nlink uint64       `json:"nlink"`
	// Dir is the owner of the directory the file is in.
	Dir owner.UIDGID `json:"dir_owner"`
	// Label and Refs are libvirt's remember_owner xattrs as read, ""
	// when absent.
	Label string `json:"libvirt_label,omitempty"`
	Refs  string `json:"libvirt_refs,omitempty"`
}

// ID is the file's inode.
func (f File) ID() owner.ID { return owner.ID{Dev: f.Dev, Ino: f.Ino} }

// Options are the facts Decide judges files against.
type Options struct {
	// QEMU is the user and group QEMU runs as (qemu.conf).
	QEMU owner.UIDGID
	// Force, when set, is the owner every file gets (--owner).
	Force *owner.UIDGID
	// InUse names the files a running domain uses, with why; nil is none.
	InUse *InUse
	// Protected reports paths the hook never changes (protected_paths).
	Protected func(path string) bool
	// AllowHardlinks permits regular files with more than one link.
	AllowHardlinks bool
	// Recorded gives the original owner the cluster records of shared
	// filesystems keep for a path (by path and inode), and where it is.
	Recorded func(f File) (o owner.UIDGID, where string, ok bool)
}

// Verdict is what to do with one file, and why.
type Verdict struct {
	File
	// Action is "give back" or "skip".
	Action string `json:"action"`
	// To is the owner it gets back (when Action is "give back").
	To *owner.UIDGID `json:"to,omitempty"`
	// Reason says where To comes from, or why the file is skipped.
	Reason string `json:"reason"`
	// ClearLabel: libvirt's xattrs are removed with the give-back, so
	// a later labelling by libvirt records the real owner afresh instead
	// of counting on a stale reference.
	ClearLabel bool `json:"clear_libvirt_xattrs,omitempty"`
}

// Actions.
const (
	GiveBack = "give back"
	Skip     = "skip"
)

// Decide judges one file. It never reads the host.
func Decide(f File, o Options) Verdict {
	v := Verdict{File: f, Action: Skip}
	skip := func(why string) Verdict { v.Reason = why; return v }
	switch {
	case f.Owner.UID != o.QEMU.UID:
		return skip(fmt.Sprintf("owned by %s, not QEMU's user", f.Owner))
	case o.Protected != nil && o.Protected(f.Path):
		return skip("under a protected path (protected_paths)")
	case f.Kind == Regular && f.Nlink > 1 && !o.AllowHardlinks:
		return skip(fmt.Sprintf("has %d hard links; another name may be a file that must keep QEMU's owner (allow_hardlinks)", f.Nlink))
	}
	if why, used := o.InUse.OfFile(f); used {
		return skip("in use: " + why)
	}
	var to owner.UIDGID
	switch {
	case o.Force != nil:
		to, v.Reason = *o.Force, "--owner"
	case o.Recorded != nil && recorded(f, o, &to, &v.Reason):
	case f.Label != "":
		l, err := remembered.ParseLabel(f.Label)
		if err != nil {
			return skip(fmt.Sprintf("libvirt's %s is unreadable (%s); give --owner", XattrDAC, err))
		}
		to = l
		v.Reason = "libvirt remembered " + strings.TrimRight(f.Label, "\x00") + " in " + XattrDAC
		if f.Refs != "" {
			v.Reason += fmt.Sprintf(" (%s = %s, stale: no running QEMU uses the file)", XattrRefDAC, strings.TrimRight(f.Refs, "\x00"))
		}
	case f.Kind == Block:
		return skip("block device without libvirt's remembered owner; give --owner")
	case f.Dir.UID == o.QEMU.UID:
		return skip("its directory is QEMU's user's too, so it says nothing about the real owner; give --owner")
	case f.Dir == Root:
		to, v.Reason = Root, "no record of its owner: root:root, the owner of its directory"
	default:
		// The directory's owner is a guess: root's 0600 file left to
		// QEMU in a user's directory would hand that user a file they
		// could never read. Root can read it anyway; the admin who knows
		// whose it is says so with --owner.
		to = Root
		v.Reason = fmt.Sprintf("no record of its owner: given to root:root, not to its directory's owner %s (a guess, and they may never have been allowed to read it); "+
			"if it is theirs: reclaim --owner +%d:+%d %s", f.Dir, f.Dir.UID, f.Dir.GID, f.Path)
	}
	if to == f.Owner {
		return skip("already has the owner it would get back")
	}
	v.Action, v.To = GiveBack, &to
	v.ClearLabel = f.Label != "" || f.Refs != ""
	return v
}

func recorded(f File, o Options, to *owner.UIDGID, reason *string) bool {
	r, where, ok := o.Recorded(f)
	if ok {
		*to, *reason = r, "the cluster record in "+where
	}
	return ok
}

// InUse names the files a running domain uses, with why: by inode, and
// by path for records whose device number may be another boot's.
type InUse struct {
	inodes map[owner.ID]string
	paths  map[string]string
}

// NewInUse returns an empty InUse.
func NewInUse() *InUse {
	return &InUse{inodes: make(map[owner.ID]string), paths: make(map[string]string)}
}

// Add records inode id as used, keeping the first reason.
func (u *InUse) Add(id owner.ID, why string) {
	if _, ok := u.inodes[id]; !ok {
		u.inodes[id] = why
	}
}

// AddPath records a path as used, keeping the first reason.
func (u *InUse) AddPath(p, why string) {
	if _, ok := u.paths[p]; !ok {
		u.paths[p] = why
	}
}

// Of reports whether inode id is used, and why.
func (u *InUse) Of(id owner.ID) (string, bool) {
	if u == nil {
		return "", false
	}
	why, ok := u.inodes[id]
	return why, ok
}

// OfFile reports whether f is used, by inode or by path, and why.
func (u *InUse) OfFile(f File) (string, bool) {
	if why, ok := u.Of(f.ID()); ok {
		return why, ok
	}
	if u == nil {
		return "", false
	}
	why, ok := u.paths[f.Path]
	return why, ok
}
