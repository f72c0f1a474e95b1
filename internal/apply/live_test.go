package apply

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
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
