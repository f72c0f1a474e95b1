package owner

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func identityOf(t *testing.T, p string) Identity {
	t.Helper()
	h, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Close() }()
	id, err := h.Identity()
	if err != nil {
		t.Fatalf("Identity(%s): %v", p, err)
	}
	return id
}

// handledFile makes a file in a temp dir and takes its identity; the test
// is skipped where the filesystem gives no file handles.
func handledFile(t *testing.T) (dir, p string, id Identity) {
	t.Helper()
	dir = t.TempDir()
	p = filepath.Join(dir, "disk.img")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	id = identityOf(t, p)
	if len(id.Handle) == 0 {
		t.Skipf("%s: the filesystem gives no file handles", dir)
	}
	return dir, p, id
}

func TestOpenByIdentity(t *testing.T) {
	dir, p, id := handledFile(t)
	moved := filepath.Join(dir, "renamed.img")
	if err := os.Rename(p, moved); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      func() Identity
		hint    string
		want    string // Path of the opened file; "" means ErrNotSameFile
		prepare func()
	}{
		{"renamed, by handle", func() Identity { return id }, p, moved, nil},
		{"no handle, path still names it", func() Identity { c := id; c.Handle, c.HandleType = nil, 0; return c }, moved, moved, nil},
		{"no handle, path names nothing", func() Identity { c := id; c.Handle, c.HandleType = nil, 0; return c }, p, "", nil},
		{"other creation time", func() Identity { c := id; c.Birth++; return c }, p, "", nil},
		{"other inode number", func() Identity { c := id; c.Ino++; return c }, p, "", nil},
		{"stale mount id, found through the hint", func() Identity { c := id; c.MountID = 1 << 30; return c }, p, moved, nil},
	}
	if id.Generation != 0 {
		tests = append(tests, struct {
			name    string
			id      func() Identity
			hint    string
			want    string
			prepare func()
		}{"other generation", func() Identity { c := id; c.Generation++; return c }, p, "", nil})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := OpenByIdentity(tt.id(), tt.hint)
			if tt.want == "" {
				if !errors.Is(err, ErrNotSameFile) {
					if h != nil {
						_ = h.Close()
					}
					t.Fatalf("OpenByIdentity = %v, want ErrNotSameFile", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenByIdentity = %v, want %s", err, tt.want)
			}
			defer func() { _ = h.Close() }()
			if h.Path != tt.want {
				t.Errorf("OpenByIdentity opened %s, want %s", h.Path, tt.want)
			}
		})
	}

	// Deleted and replaced by a new file at the same path: the handle is
	// stale, and the new file is not the recorded one.
	if err := os.Remove(moved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(moved, []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h, err := OpenByIdentity(id, moved); !errors.Is(err, ErrNotSameFile) {
		if h != nil {
			_ = h.Close()
		}
		t.Errorf("OpenByIdentity of a deleted file = %v, want ErrNotSameFile", err)
	}
}

func TestIdentityOfDeviceNode(t *testing.T) {
	// A device node is never opened for the generation ioctl: that would
	// act on the device.
	id := identityOf(t, "/dev/null")
	if id.Generation != 0 {
		t.Errorf("Identity(/dev/null).Generation = %d, want 0 (not read)", id.Generation)
	}
	if id.Ino == 0 {
		t.Errorf("Identity(/dev/null) has no inode number")
	}
}

// TestOpenHandleAt: a handle opens its inode under the path given, or
// where it is now; once the inode is deleted the error is ErrNotSameFile.
func TestOpenHandleAt(t *testing.T) {
	needRoot(t)
	dir, p, id := handledFile(t)
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Close(dfd) }()
	for _, tc := range []struct{ path, want string }{{"/given/name", "/given/name"}, {"", p}} {
		h, err := OpenHandleAt(dfd, id.HandleType, id.Handle, tc.path)
		if err != nil {
			t.Fatalf("OpenHandleAt(path %q) = %v", tc.path, err)
		}
		if h.Path != tc.want || h.ID() != id.Inode() {
			t.Errorf("OpenHandleAt(path %q) = %s inode %v, want %s inode %v", tc.path, h.Path, h.ID(), tc.want, id.Inode())
		}
		_ = h.Close()
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if h, err := OpenHandleAt(dfd, id.HandleType, id.Handle, p); !errors.Is(err, ErrNotSameFile) {
		if h != nil {
			_ = h.Close()
		}
		t.Errorf("OpenHandleAt of a deleted file = %v, want ErrNotSameFile", err)
	}
}
