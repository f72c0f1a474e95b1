package reclaim

import (
	"strings"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

func TestDecide(t *testing.T) {
	qemu := owner.UIDGID{UID: 64055, GID: 64055}
	base := File{Path: "/img/a.raw", Kind: Regular, Dev: 1, Ino: 10, Owner: qemu, Nlink: 1, Dir: owner.UIDGID{UID: 0, GID: 0}}
	with := func(mod func(*File)) File { f := base; mod(&f); return f }
	used := NewInUse()
	used.Add(owner.ID{Dev: 1, Ino: 11}, "open by QEMU pid 7")
	used.AddPath("/img/recorded.raw", "recorded in the hook's journal")
	alice := owner.UIDGID{UID: 1000, GID: 1000}
	for _, tc := range []struct {
		name   string
		f      File
		force  *owner.UIDGID
		action string
		to     *owner.UIDGID
		reason string
		clear  bool
	}{
		{name: "root's directory", f: base, action: GiveBack, to: &owner.UIDGID{UID: 0, GID: 0}, reason: "owner of its directory"},
		{name: "a user's directory is no evidence: root", f: with(func(f *File) { f.Dir = alice }), action: GiveBack, to: &owner.UIDGID{UID: 0, GID: 0}, reason: "reclaim --owner +1000:+1000 /img/a.raw"},
		{name: "a user's directory, --owner", f: with(func(f *File) { f.Dir = alice }), force: &alice, action: GiveBack, to: &alice, reason: "--owner"},
		{name: "libvirt's label wins over the directory", f: with(func(f *File) { f.Label = "+1000:+100"; f.Refs = "1" }), action: GiveBack, to: &owner.UIDGID{UID: 1000, GID: 100}, reason: "ref_dac = 1, stale", clear: true},
		{name: "--owner wins over the label", f: with(func(f *File) { f.Label = "+1000:+100" }), force: &alice, action: GiveBack, to: &alice, reason: "--owner", clear: true},
		{name: "unreadable label", f: with(func(f *File) { f.Label = "garbage" }), action: Skip, reason: "unreadable"},
		{name: "not QEMU's", f: with(func(f *File) { f.Owner = alice }), action: Skip, reason: "not QEMU's user"},
		{name: "in use", f: with(func(f *File) { f.Ino = 11 }), action: Skip, reason: "in use: open by QEMU pid 7"},
		{name: "in use, even with --owner", f: with(func(f *File) { f.Ino = 11 }), force: &alice, action: Skip, reason: "in use"},
		{name: "recorded by path (another boot's device number)", f: with(func(f *File) { f.Path = "/img/recorded.raw"; f.Dev = 99 }), action: Skip, reason: "in use: recorded"},
		{name: "hard links", f: with(func(f *File) { f.Nlink = 2 }), action: Skip, reason: "hard links"},
		{name: "protected", f: with(func(f *File) { f.Path = "/etc/x" }), action: Skip, reason: "protected"},
		{name: "directory is QEMU's too", f: with(func(f *File) { f.Dir = qemu }), action: Skip, reason: "give --owner"},
		{name: "block device without a label", f: with(func(f *File) { f.Kind = Block }), action: Skip, reason: "block device"},
		{name: "block device with a label", f: with(func(f *File) { f.Kind = Block; f.Label = "+0:+6" }), action: GiveBack, to: &owner.UIDGID{UID: 0, GID: 6}, clear: true},
		{name: "label naming QEMU itself", f: with(func(f *File) { f.Label = "+64055:+64055" }), action: Skip, reason: "already has"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Decide(tc.f, Options{QEMU: qemu, Force: tc.force, InUse: used, Protected: func(p string) bool { return strings.HasPrefix(p, "/etc/") }})
			if v.Action != tc.action || !strings.Contains(v.Reason, tc.reason) || v.ClearLabel != tc.clear {
				t.Errorf("Decide = %s (%q, clear %v), want %s (reason with %q, clear %v)", v.Action, v.Reason, v.ClearLabel, tc.action, tc.reason, tc.clear)
			}
			if (v.To == nil) != (tc.to == nil) || (v.To != nil && *v.To != *tc.to) {
				t.Errorf("Decide gives to %v, want %v", v.To, tc.to)
			}
		})
	}
}
