package apply

import (
	"os"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// TestReleaseInventorySharedFS: a file libvirt labelled on a filesystem
// other hosts mount (a migration's destination may use it now) is left
// with its owner; on a local filesystem it is given back.
func TestReleaseInventorySharedFS(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shared bool
		want   func(f *fixture) [2]uint32
	}{
		{"local", false, func(f *fixture) [2]uint32 { return f.orig[f.path("hot.img")] }},
		{"shared", true, func(*fixture) [2]uint32 { return qemu }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "hot.img")
			rec := inventory.New("vm1", f.boot, qemuUID, qemuGID, []string{f.root})
			if err := inventory.Save(f.state, rec); err != nil {
				t.Fatal(err)
			}
			before, ok := inventory.Stat(f.root, "hot.img")
			if !ok {
				t.Fatal("hot.img not statable")
			}
			if err := inventory.SaveLabelled(f.state, &inventory.Labelled{Files: map[string]inventory.File{before.Path(): before}}); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(f.path("hot.img"), qemuUID, qemuGID); err != nil { // libvirt's label
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
