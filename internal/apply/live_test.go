package apply

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// TestReleaseInventory: a file libvirt labelled during the run is given
// back on a local filesystem, also after QEMU's user gave it one of its own
// groups (still QEMU's user's, so no admin's change); on a filesystem other
// hosts mount (a migration's destination may use it now) it is left with
// its owner.
func TestReleaseInventory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shared bool
		gid    uint32 // the group the file has at release
		want   func(f *fixture) [2]uint32
	}{
		{"local", false, qemuGID, func(f *fixture) [2]uint32 { return f.orig[f.path("hot.img")] }},
		{"local after QEMU's chgrp", false, 4343, func(f *fixture) [2]uint32 { return f.orig[f.path("hot.img")] }},
		{"shared", true, qemuGID, func(*fixture) [2]uint32 { return qemu }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "hot.img")
			rec := inventory.New("vm1", f.boot, qemuUID, qemuGID, []string{f.root})
			if err := inventory.Save(f.state, rec); err != nil {
				t.Fatal(err)
			}
			before := labelledFile(t, f.root, "hot.img", true)
			if err := inventory.SaveLabelled(f.state, &inventory.Labelled{Files: []inventory.File{before}}); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(f.path("hot.img"), qemuUID, int(tc.gid)); err != nil { // libvirt's label (then QEMU's chgrp)
				t.Fatal(err)
			}
			r := f.runner(nil)
			r.SharedFS = func(*owner.Handle) bool { return tc.shared }
			if err := r.ReleaseInventory(rec, "release", nil); err != nil {
				t.Fatal(err)
			}
			f.wantOwner("hot.img", tc.want(f))
		})
	}
}

// labelledFile is what the watcher records of dir/name just before
// libvirt's label: its identity and its owner now.
func labelledFile(t *testing.T, dir, name string, proven bool) inventory.File {
	t.Helper()
	h, err := owner.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, err := inventory.Identify(h, dir)
	if err != nil {
		t.Fatal(err)
	}
	f.Proven = proven
	return f
}

// TestCheckTransient: only strict mode refuses <transient/> disks, and
// the refusal names the disks and the qemu.conf to change.
func TestCheckTransient(t *testing.T) {
	off, on := false, true
	for _, tc := range []struct {
		name      string
		transient []string
		dynamic   *bool
		want      string // "" for no error; else a part of the message
	}{
		{"strict, none", nil, &off, ""},
		{"strict, two", []string{"vda", "vdb"}, &off, "disk vda, vdb is <transient/>"},
		{"cooperative", []string{"vda"}, &on, ""},
		{"libvirt's default is cooperative", []string{"vda"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &domain.Domain{Name: "vm", Transient: tc.transient}
			q := config.QEMU{Path: "/etc/libvirt/qemu.conf", DynamicOwnership: tc.dynamic}
			err := CheckTransient(d, q)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckTransient(%v) = %v, want nil", tc.transient, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), q.Path)):
				t.Errorf("CheckTransient(%v) = %v, want an error with %q and %s", tc.transient, err, tc.want, q.Path)
			}
		})
	}
}
