package owner

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReaderSharesOneDescriptor: a regular file is opened for reading once
// per Handle, whatever reads it (headers, generation, the lease probe);
// readers leave that descriptor open and Close releases it. A directory's
// descriptor is never kept.
func TestReaderSharesOneDescriptor(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "img")
	if err := os.WriteFile(p, []byte("QFI\xfbrest"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := h.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := h.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	if r1.fd != r2.fd || !r2.shared {
		t.Errorf("second reader fd %d (shared %v), want the first's %d, shared", r2.fd, r2.shared, r1.fd)
	}
	buf := make([]byte, 4)
	if _, err := r2.ReadAt(buf, 0); err != nil || string(buf) != "QFI\xfb" {
		t.Errorf("read after the first reader's Close = %q, %v", buf, err)
	}
	if r2.Size != 8 {
		t.Errorf("Size = %d, want 8", r2.Size)
	}
	if _, err := unix.FcntlInt(uintptr(r2.fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("the shared descriptor is closed while the Handle is open: %v", err)
	}
	fd := r2.fd
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
		t.Errorf("descriptor %d still open after Handle.Close", fd)
	}

	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, shared, err := d.readFD(); err != nil || shared || d.hasRFD {
		t.Errorf("directory readFD: shared %v, kept %v, err %v; want a descriptor of its own", shared, d.hasRFD, err)
	}
}

// TestHasWriters: the lease probe sees a descriptor open for writing, in
// this process or another, and nothing when there is none.
func TestHasWriters(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		writer bool
	}{{"no writer", false}, {"a writer", true}, {"writer gone", false}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.writer {
				w, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
			}
			h, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			writers, known, err := h.HasWriters()
			if err != nil {
				t.Fatal(err)
			}
			if !known {
				t.Skipf("%s takes no leases", p)
			}
			if writers != tc.writer {
				t.Errorf("HasWriters = %v, want %v", writers, tc.writer)
			}
		})
	}
}
