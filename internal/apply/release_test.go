package apply

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

// TestPlanReleaseMatchesRelease checks that the dry run of a release
// decides what the release then does, file by file, in both modes.
func TestPlanReleaseMatchesRelease(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cooperative bool
		// rootRestored is the verdict for a file libvirt set to root:root.
		rootRestored Verdict
	}{
		{"strict", false, Leave},
		{"cooperative", true, GiveBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "given.img", "admin.img", "replaced.img", "libvirt-root.img", "shared.img")
			if err := f.prepare("vm1", "given.img", "admin.img", "replaced.img", "libvirt-root.img", "shared.img"); err != nil {
				t.Fatal(err)
			}
			if err := f.prepare("vm2", "shared.img"); err != nil {
				t.Fatal(err)
			}
			admin := [2]uint32{4242, 4343}
			if err := os.Chown(f.path("admin.img"), int(admin[0]), int(admin[1])); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(f.path("libvirt-root.img"), 0, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(f.path("replaced.img")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f.path("replaced.img"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			r := f.runner(nil)
			r.Cooperative = tc.cooperative
			st, err := journal.LoadFile(f.state + "/state.json")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]Verdict{}
			for _, d := range r.PlanRelease(st, "vm1", "-") {
				got[d.Path] = d.Verdict
			}
			want := map[string]Verdict{
				f.path("given.img"):        GiveBack,
				f.path("admin.img"):        Leave,
				f.path("replaced.img"):     Gone,
				f.path("libvirt-root.img"): tc.rootRestored,
				f.path("shared.img"):       Keep,
			}
			for p, w := range want {
				if got[p] != w {
					t.Errorf("PlanRelease(vm1) for %s = %q, want %q", p, got[p], w)
				}
			}
			if err := r.Release("vm1", "-"); err != nil {
				t.Fatal(err)
			}
			f.wantOwner("given.img", f.orig[f.path("given.img")])
			f.wantOwner("admin.img", admin)
			f.wantOwner("replaced.img", [2]uint32{0, 0})
			f.wantOwner("shared.img", qemu)
			if tc.cooperative {
				f.wantOwner("libvirt-root.img", f.orig[f.path("libvirt-root.img")])
			} else {
				f.wantOwner("libvirt-root.img", [2]uint32{0, 0})
			}
		})
	}
}

// TestReleaseAfterDirectoryRename: the directory of the images, which
// got a search ACL, is renamed while the domain runs. Release finds the
// images and the directory by their file handles: owners back, the ACL
// entry gone, nothing left in the journal.
func TestReleaseAfterDirectoryRename(t *testing.T) {
	f := newFixture(t, "a.img", "b.img")
	if err := f.prepare("vm1", "a.img", "b.img"); err != nil {
		t.Fatal(err)
	}
	moved := f.root + "-moved"
	if err := os.Rename(f.root, moved); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Rename(moved, f.root) })
	r := f.runner(nil)
	r.Store.Dir = filepath.Join(moved, "state")
	if err := r.Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.img", "b.img"} {
		if got := ownerOf(t, filepath.Join(moved, n)); got != f.orig[f.path(n)] {
			t.Errorf("owner of %s after the rename = %v, want %v", n, got, f.orig[f.path(n)])
		}
	}
	if _, err := unix.Getxattr(moved, "system.posix_acl_access", nil); !errors.Is(err, unix.ENODATA) {
		t.Errorf("%s still has an access ACL after release (getxattr: %v)", moved, err)
	}
	st, err := journal.LoadFile(journal.StatePath(r.Store.Dir))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.All()); n != 0 {
		t.Errorf("journal holds %d entries after release, want 0", n)
	}
}
