package apply

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
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
		{"group write, QEMU alone in the group", 0o660, "", false},
		{"group write, others in the group", 0o660, "others", true},
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
			groupOthers = func(uint32, uint32) bool { return tc.setfacl == "others" }
			defer func() { groupOthers = config.GroupOthers }()
			if tc.setfacl != "" && tc.setfacl != "others" {
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
		r := f.runner(nil)
		r.Op = "grant"
		err := r.Prepare(p)
		if got := errors.Is(err, ErrWritable); got != tc.refused {
			t.Errorf("grant of %s to vm1 = %v, want refused=%v", tc.file, err, tc.refused)
		}
	}
}

// TestSealRereadsTheHeader: the image's owner rewrites its header between
// the plan's read and prepare (and closes it again, so no writer is left):
// prepare must refuse, and leave every owner as it was.
func TestSealRereadsTheHeader(t *testing.T) {
	f := newFixture(t, "base.raw")
	f.searchable()
	top, base := f.path("top.qcow2"), f.path("base.raw")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, top).CombinedOutput(); err != nil {
		t.Skipf("qemu-img: %v %s", err, out)
	}
	if err := os.Chown(top, 2000, 3000); err != nil {
		t.Fatal(err)
	}
	d := &domain.Domain{Name: "vm1", Relabel: true}
	d.Resources = append(d.Resources, domain.Resource{Path: top, Kind: domain.KindDisk, From: "disk[0]", Expect: domain.TypeRegular, Format: "qcow2", ProbeBacking: true})
	p, err := plan.Build(d, plan.Env{RunAs: config.Identity{UID: qemuUID, GID: qemuGID}, MaxDepth: 8, ResolveLabel: config.ParseLabel, ParentACL: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	other := f.path("other.raw")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "rebase", "-u", "-F", "raw", "-b", other, top).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img rebase: %v %s", err, out)
	}
	err = f.runner(nil).Prepare(p)
	if !errors.Is(err, ErrWritable) || !strings.Contains(err.Error(), "changed after the hook read it") {
		t.Errorf("Prepare after the header changed = %v, want a refusal", err)
	}
	if got := ownerOf(t, top); got != [2]uint32{2000, 3000} {
		t.Errorf("owner of top.qcow2 after the refusal = %v, want 2000:3000", got)
	}
	f.wantOwner("base.raw", f.orig[base])
}

// TestSealCoversBlockDevices: a qcow2 on a block device (a loop device
// here, reached through a node of its own) whose ACL lets another user
// write it is refused as a regular file with that ACL is: that user could
// rewrite the header after the check to name another domain's disk.
// Nothing changes owner, and the ACL stays the admin's to fix.
func TestSealCoversBlockDevices(t *testing.T) {
	f := newFixture(t, "base.raw")
	f.searchable()
	img := f.path("disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", f.path("base.raw"), img, "1M").CombinedOutput(); err != nil {
		t.Skipf("qemu-img: %v %s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	var st unix.Stat_t
	if err := unix.Stat(loop, &st); err != nil {
		t.Fatalf("stat %q: %v", loop, err)
	}
	for _, tc := range []struct {
		name    string
		setfacl string
		refused bool
	}{
		{"owner only", "", false},
		{"a user may write it", "u:4242:rw", true},
		{"world writable", "o::rw", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := f.path("vdb-" + strings.ReplaceAll(tc.name, " ", "-"))
			if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(node)
			if err := os.Chown(node, 2000, 3000); err != nil {
				t.Fatal(err)
			}
			if tc.setfacl != "" {
				if out, err := exec.Command("setfacl", "-m", tc.setfacl, node).CombinedOutput(); err != nil {
					t.Fatalf("setfacl: %v %s", err, out)
				}
			}
			before := getfacl(t, node)
			d := &domain.Domain{Name: "vm1", Relabel: true}
			d.Resources = append(d.Resources, domain.Resource{Path: node, Kind: domain.KindDisk, From: "disk[0]", Expect: domain.TypeBlock, Format: "qcow2", ProbeBacking: true})
			p, err := plan.Build(d, plan.Env{RunAs: config.Identity{UID: qemuUID, GID: qemuGID}, MaxDepth: 8, ResolveLabel: config.ParseLabel, ParentACL: true})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			r := f.runner(nil)
			err = r.Prepare(p)
			if got := errors.Is(err, ErrWritable); got != tc.refused {
				t.Fatalf("Prepare of a qcow2 on a block device, %s = %v, want refused=%v", tc.name, err, tc.refused)
			}
			if !tc.refused {
				if err := r.Release("vm1", "-"); err != nil {
					t.Fatal(err)
				}
			}
			if got := ownerOf(t, node); got != [2]uint32{2000, 3000} {
				t.Errorf("owner of the node = %v, want 2000:3000", got)
			}
			f.wantOwner("base.raw", f.orig[f.path("base.raw")])
			if got := getfacl(t, node); got != before {
				t.Errorf("getfacl of the node = %q, want %q", got, before)
			}
		})
	}
}
