package reclaim

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

const qemuUID = 64055

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the tree is chowned for real")
	}
}

// tree makes files under root, each owned by uid, directories 0755 root.
func tree(t *testing.T, root string, files map[string]int) {
	t.Helper()
	for rel, uid := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}

func paths(fs []File, root string) []string {
	var out []string
	for _, f := range fs {
		r, _ := filepath.Rel(root, f.Path)
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

func TestScan(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	outside := t.TempDir()
	tree(t, root, map[string]int{
		"a.raw":          qemuUID,
		"user/b.qcow2":   qemuUID,
		"user/mine.raw":  1000,
		".hidden.raw":    qemuUID,
		".snap/c.raw":    qemuUID,
		"lost+found/d":   qemuUID,
		"deep/er/e.iso":  qemuUID,
		"root-owned.raw": 0,
	})
	tree(t, outside, map[string]int{"secret.raw": qemuUID})
	if err := os.Chown(filepath.Join(root, "user"), 1000, 100); err != nil {
		t.Fatal(err)
	}
	// Symlinks out of the tree, to a file and to a directory, are not followed.
	if err := os.Symlink(filepath.Join(outside, "secret.raw"), filepath.Join(root, "link.raw")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "linkdir")); err != nil {
		t.Fatal(err)
	}
	// libvirt's remembered owner on one file.
	if err := unix.Setxattr(filepath.Join(root, "a.raw"), XattrDAC, []byte("+1000:+100"), 0); err != nil {
		t.Skipf("trusted xattrs unsupported here: %v", err)
	}
	if err := unix.Setxattr(filepath.Join(root, "a.raw"), XattrRefDAC, []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	// Another filesystem below the root is not entered unless named.
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mounted := unix.Mount("tmpfs", mnt, "tmpfs", 0, "mode=0755") == nil
	if mounted {
		defer func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) }()
		tree(t, mnt, map[string]int{"f.raw": qemuUID})
	}

	files, notes, err := Scan([]string{root}, qemuUID)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.raw", "deep/er/e.iso", "user/b.qcow2"}
	if got := paths(files, root); !slices.Equal(got, want) {
		t.Errorf("Scan found %v, want %v (notes %v)", got, want, notes)
	}
	for _, f := range files {
		switch filepath.Base(f.Path) {
		case "a.raw":
			if f.Label != "+1000:+100" || f.Refs != "1" || f.Dir != (owner.UIDGID{UID: 0, GID: 0}) {
				t.Errorf("a.raw: label %q refs %q dir %v", f.Label, f.Refs, f.Dir)
			}
		case "b.qcow2":
			if f.Dir != (owner.UIDGID{UID: 1000, GID: 100}) || f.Label != "" || f.Kind != Regular || f.Owner.UID != qemuUID {
				t.Errorf("b.qcow2: %+v", f)
			}
		}
	}
	if mounted {
		if !slices.ContainsFunc(notes, func(n string) bool { return n == mnt+": another filesystem, not entered (name it to reclaim there)" }) {
			t.Errorf("no note about %s: %v", mnt, notes)
		}
		// Named, the mount is scanned, and so is a hidden file named.
		files, _, err = Scan([]string{mnt, filepath.Join(root, ".hidden.raw")}, qemuUID)
		if err != nil {
			t.Fatal(err)
		}
		if got := paths(files, root); !slices.Equal(got, []string{".hidden.raw", "mnt/f.raw"}) {
			t.Errorf("named roots: %v", got)
		}
	}
	// A missing root is a note.
	files, notes, err = Scan([]string{filepath.Join(root, "absent")}, qemuUID)
	if err != nil || len(files) != 0 || len(notes) != 1 {
		t.Errorf("missing root: %v %v %v", files, notes, err)
	}
	// A root given as a symlink is resolved once.
	files, _, err = Scan([]string{filepath.Join(root, "linkdir")}, qemuUID)
	if err != nil || len(files) != 1 || files[0].Path != filepath.Join(outside, "secret.raw") {
		t.Errorf("symlinked root: %v %v", files, err)
	}
}
