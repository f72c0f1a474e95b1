package apply

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

func TestWritableByOthers(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		setfacl string
		refused bool
	}{
		{"owner only", 0o600, "", false},
		{"group write is QEMU's group", 0o660, "", false},
		{"world writable", 0o606, "", true},
		{"named user may write", 0o600, "u:4242:rw", true},
		{"named group may write", 0o600, "g:4242:rw", true},
		{"named user read only", 0o600, "u:4242:r", false},
		{"QEMU's own entry", 0o600, "u:64055:rw", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := t.TempDir() + "/top.qcow2"
			if err := os.WriteFile(p, nil, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			if tc.setfacl != "" {
				if out, err := exec.Command("setfacl", "-m", tc.setfacl, p).CombinedOutput(); err != nil {
					t.Skipf("setfacl: %v %s", err, out)
				}
			}
			h, err := owner.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			err = writableByOthers(h, qemuUID)
			if got := errors.Is(err, ErrWritable); got != tc.refused {
				t.Errorf("writableByOthers(%s) = %v, want refused=%v", tc.name, err, tc.refused)
			}
		})
	}
}

func TestNoWritersSeesOpenWriter(t *testing.T) {
	needRoot(t)
	p := t.TempDir() + "/top.qcow2"
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := owner.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := noWriters(h); err != nil {
		t.Fatalf("noWriters with no writer = %v", err)
	}
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := noWriters(h); !errors.Is(err, ErrWritable) {
		t.Errorf("noWriters with a writer open = %v, want ErrWritable", err)
	}
	w.Close()
	if err := noWriters(h); err != nil {
		t.Errorf("noWriters after the writer closed = %v", err)
	}
}

// TestSealSkipsFilesTheDomainHolds: a grant whose chain leads into the
// image the running domain's QEMU writes must not be refused for that
// writer; a file another process writes still is.
func TestSealSkipsFilesTheDomainHolds(t *testing.T) {
	f := newFixture(t, "top.img", "other.img")
	if err := f.prepare("vm1", "top.img"); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(f.path("top.img"), os.O_WRONLY, 0) // QEMU writing its disk
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	o, err := os.OpenFile(f.path("other.img"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for _, tc := range []struct {
		file    string
		refused bool
	}{{"top.img", false}, {"other.img", true}} {
		p := f.plan("vm1", qemuUID, qemuGID, tc.file)
		for _, s := range p.Steps {
			s.Header = s.Handle != nil && s.Action != "acl"
		}
		err := f.runner(nil).Prepare(p)
		if got := errors.Is(err, ErrWritable); got != tc.refused {
			t.Errorf("grant of %s to vm1 = %v, want refused=%v", tc.file, err, tc.refused)
		}
	}
}
