package plan_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// vmdk writes a monolithicFlat descriptor at p listing extents.
func (tr *atkTree) vmdk(p string, extents []string, uid int) {
	tr.t.Helper()
	var b strings.Builder
	b.WriteString("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n")
	for _, e := range extents {
		fmt.Fprintf(&b, "RW 1 FLAT \"%s\" 0\n", e)
	}
	tr.write(p, b.String(), uid)
}

func (tr *atkTree) extents(dir, prefix string, n int) []string {
	tr.t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%05d.raw", prefix, i)
		tr.write(filepath.Join(dir, names[i]), "", atkImage)
	}
	return names
}

func TestHeaderBounds(t *testing.T) {
	t.Run("too many extents in one descriptor", func(t *testing.T) {
		tr := newAtkTree(t)
		names := tr.extents(tr.img, strings.Repeat("e", 200), plan.MaxFilesPerImage+1)
		tr.vmdk(filepath.Join(tr.img, "d.vmdk"), names, atkImage)
		first := filepath.Join(tr.img, names[0])
		err := tr.guard(atkDisk("vmdk", "$ROOT/img/d.vmdk"), tr.env(), first, filepath.Join(tr.img, "d.vmdk"))
		wantRefusal(t, err, fmt.Sprintf("domain vm: the vmdk header of %s lists %d extent files, more than the %d", filepath.Join(tr.img, "d.vmdk"), plan.MaxFilesPerImage+1, plan.MaxFilesPerImage))
	})
	t.Run("extents exactly at the bound", func(t *testing.T) {
		tr := newAtkTree(t)
		names := tr.extents(tr.img, "x", plan.MaxFilesPerImage)
		tr.vmdk(filepath.Join(tr.img, "d.vmdk"), names, atkImage)
		p, err := plan.Build(tr.parse(atkDisk("vmdk", "$ROOT/img/d.vmdk")), tr.env())
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		defer p.Close()
		if got, want := len(p.Steps), plan.MaxFilesPerImage+1; got != want {
			t.Errorf("plan has %d steps, want %d", got, want)
		}
	})
	t.Run("too many files in one domain", func(t *testing.T) {
		tr := newAtkTree(t)
		var disks strings.Builder
		n := plan.MaxFilesPerDomain/plan.MaxFilesPerImage + 1
		for d := range n {
			names := tr.extents(tr.img, fmt.Sprintf("d%d-", d), plan.MaxFilesPerImage)
			tr.vmdk(filepath.Join(tr.img, fmt.Sprintf("d%d.vmdk", d)), names, atkImage)
			fmt.Fprintf(&disks, "<disk type='file' device='disk'><driver name='qemu' type='vmdk'/><source file='$ROOT/img/d%d.vmdk'/><target dev='vd%c' bus='virtio'/></disk>", d, 'a'+d)
		}
		xml := strings.Replace(atkDisk("raw", "$ROOT/none"), "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$ROOT/none'/><target dev='vda' bus='virtio'/></disk>", disks.String(), 1)
		last := filepath.Join(tr.img, fmt.Sprintf("d%d-%05d.raw", n-1, plan.MaxFilesPerImage-1))
		err := tr.guard(xml, tr.env(), last)
		wantRefusal(t, err, fmt.Sprintf("domain vm: more than %d files", plan.MaxFilesPerDomain))
	})
	t.Run("backing name component longer than NAME_MAX", func(t *testing.T) {
		tr := newAtkTree(t)
		tr.qcow2(filepath.Join(tr.img, "top.qcow2"), strings.Repeat("n", 256), "raw", atkImage)
		err := tr.guard(atkDisk("qcow2", "$ROOT/img/top.qcow2"), tr.env(), filepath.Join(tr.img, "top.qcow2"))
		wantRefusal(t, err, "256-byte component, longer than NAME_MAX (255)")
	})
}

// TestHeaderOwnerRule checks the owner rule for header-named files against
// the owner the journal recorded (a fake journal here), not the current
// one: while bob's domain runs, bob's image is QEMU's.
func TestHeaderOwnerRule(t *testing.T) {
	const bob = atkOther
	setup := func(t *testing.T) (*atkTree, string) {
		tr := newAtkTree(t)
		bobImg := filepath.Join(tr.img, "bob.raw")
		tr.write(bobImg, "bob's data", atkQEMU) // held by bob's running domain
		tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "bob.raw", "raw", atkImage)
		return tr, bobImg
	}
	journal := func(entries map[string]uint32) func(dev, ino uint64) (uint32, uint32, bool) {
		ids := map[owner.ID]uint32{}
		for p, uid := range entries {
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			ids[owner.ID{Dev: uint64(st.Dev), Ino: st.Ino}] = uid
		}
		return func(dev, ino uint64) (uint32, uint32, bool) {
			uid, ok := ids[owner.ID{Dev: dev, Ino: ino}]
			return uid, uid, ok
		}
	}
	t.Run("another domain's image, by its recorded owner", func(t *testing.T) {
		tr, bobImg := setup(t)
		env := tr.env()
		env.RecordedOwner = journal(map[string]uint32{bobImg: bob})
		err := tr.guard(atkDisk("qcow2", "$ROOT/img/top.qcow2"), env, bobImg)
		wantRefusal(t, err, fmt.Sprintf("owned by uid %d", bob))
	})
	t.Run("without a journal the current owner counts", func(t *testing.T) {
		tr, bobImg := setup(t)
		p, err := plan.Build(tr.parse(atkDisk("qcow2", "$ROOT/img/top.qcow2")), tr.env())
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		defer p.Close()
		var hc *plan.OwnerCheck
		for _, s := range p.Steps {
			if s.Path == bobImg {
				hc = s.HeaderCheck
			}
		}
		if hc == nil || hc.FileUID != atkQEMU || hc.FileRecorded {
			t.Fatalf("HeaderCheck of %s = %+v, want FileUID %d not recorded", bobImg, hc, atkQEMU)
		}
		// Under the lock the journal knows better: the re-check refuses.
		err = hc.Judge(journal(map[string]uint32{bobImg: bob}))
		if !errors.Is(err, owner.ErrRefused) || !strings.Contains(err.Error(), fmt.Sprintf("owned by uid %d", bob)) {
			t.Errorf("Judge with bob's record = %v, want a refusal", err)
		}
		if err := hc.Judge(nil); err != nil {
			t.Errorf("Judge without a journal = %v, want nil", err)
		}
	})
	t.Run("after bob's domain stopped", func(t *testing.T) {
		tr, bobImg := setup(t)
		if err := os.Chown(bobImg, bob, bob); err != nil {
			t.Fatal(err)
		}
		err := tr.guard(atkDisk("qcow2", "$ROOT/img/top.qcow2"), tr.env(), bobImg)
		wantRefusal(t, err, fmt.Sprintf("owned by uid %d", bob))
	})
	t.Run("the naming image is judged by its recorded owner too", func(t *testing.T) {
		tr := newAtkTree(t)
		base := filepath.Join(tr.img, "base.raw")
		top := filepath.Join(tr.img, "top.qcow2")
		tr.write(base, "", atkImage)
		tr.qcow2(top, "base.raw", "raw", atkQEMU) // another domain holds the overlay
		env := tr.env()
		env.RecordedOwner = journal(map[string]uint32{top: atkImage})
		p, err := plan.Build(tr.parse(atkDisk("qcow2", "$ROOT/img/top.qcow2")), env)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		p.Close()
	})
}

// TestHeaderPlaceAndType: header-named files must look like images and lie
// where images are, not anywhere in the tree below an image.
func TestHeaderPlaceAndType(t *testing.T) {
	tests := []struct {
		name  string
		setup func(tr *atkTree, env *plan.Env) (named string)
		msg   string // "" means it must build
	}{
		{"executable script in a subdirectory", func(tr *atkTree, env *plan.Env) string {
			p := filepath.Join(tr.img, "tools", "run.sh")
			tr.write(p, "#!/bin/sh\n", atkImage)
			if err := os.Chmod(p, 0o755); err != nil {
				tr.t.Fatal(err)
			}
			tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "tools/run.sh", "raw", atkImage)
			return p
		}, "mode 0755"},
		{"plain file in a subdirectory", func(tr *atkTree, env *plan.Env) string {
			p := filepath.Join(tr.img, "sub", "base.raw")
			tr.write(p, "", atkImage)
			tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "sub/base.raw", "raw", atkImage)
			return p
		}, "neither in the directory of the image naming it"},
		{"executable beside the image", func(tr *atkTree, env *plan.Env) string {
			p := filepath.Join(tr.img, "base.raw")
			tr.write(p, "", atkImage)
			if err := os.Chmod(p, 0o640|0o010); err != nil {
				tr.t.Fatal(err)
			}
			tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "base.raw", "raw", atkImage)
			return p
		}, "never executable"},
		{"setgid file beside the image", func(tr *atkTree, env *plan.Env) string {
			p := filepath.Join(tr.img, "base.raw")
			tr.write(p, "", atkImage)
			if err := os.Chmod(p, 0o640|os.ModeSetgid); err != nil {
				tr.t.Fatal(err)
			}
			tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "base.raw", "raw", atkImage)
			return p
		}, "setgid"},
		{"hidden file beside the image", func(tr *atkTree, env *plan.Env) string {
			p := filepath.Join(tr.img, ".profile")
			tr.write(p, "", atkImage)
			tr.qcow2(filepath.Join(tr.img, "top.qcow2"), ".profile", "raw", atkImage)
			return p
		}, "hidden file"},
		{"plain file beside the image", func(tr *atkTree, env *plan.Env) string {
			p := filepath.Join(tr.img, "base.raw")
			tr.write(p, "", atkImage)
			tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "base.raw", "raw", atkImage)
			return p
		}, ""},
		{"subdirectory of a pool target", func(tr *atkTree, env *plan.Env) string {
			p := filepath.Join(tr.img, "bases", "base.raw")
			tr.write(p, "", atkImage)
			tr.write(filepath.Join(env.PoolDir, "img.xml"), "<pool type='dir'><name>img</name><target><path>"+tr.img+"</path></target></pool>", 0)
			tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "bases/base.raw", "raw", atkImage)
			return p
		}, ""},
		{"hidden directory of a pool target", func(tr *atkTree, env *plan.Env) string {
			p := filepath.Join(tr.img, ".ssh", "base.raw")
			tr.write(p, "", atkImage)
			tr.write(filepath.Join(env.PoolDir, "img.xml"), "<pool type='dir'><name>img</name><target><path>"+tr.img+"</path></target></pool>", 0)
			tr.qcow2(filepath.Join(tr.img, "top.qcow2"), ".ssh/base.raw", "raw", atkImage)
			return p
		}, "hidden files excluded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newAtkTree(t)
			env := tr.env()
			named := tt.setup(tr, &env)
			tr.expect(atkDisk("qcow2", "$ROOT/img/top.qcow2"), env, tt.msg, named)
		})
	}
}

// TestAdminStore: in a directory only root can write, images that headers
// name may have any owner (shared templates); anywhere else they may not.
func TestAdminStore(t *testing.T) {
	tests := []struct {
		name string
		prep func(tr *atkTree, store string)
		msg  string
	}{
		{"root-owned 0755", func(tr *atkTree, store string) {}, ""},
		{"group-writable", func(tr *atkTree, store string) {
			if err := os.Chmod(store, 0o775); err != nil {
				tr.t.Fatal(err)
			}
		}, "directory only root can write"},
		{"owned by a user", func(tr *atkTree, store string) {
			if err := os.Chown(store, atkImage, atkImage); err != nil {
				tr.t.Fatal(err)
			}
		}, fmt.Sprintf("owned by uid %d", atkOther)},
		{"ACL grants a user write", func(tr *atkTree, store string) {
			if out, err := exec.Command("setfacl", "-m", fmt.Sprintf("u:%d:rwx", atkImage), store).CombinedOutput(); err != nil {
				tr.t.Skipf("setfacl: %v %s", err, out)
			}
		}, "directory only root can write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newAtkTree(t)
			store := filepath.Join(tr.root, "store")
			tr.mkdir(store)
			base := filepath.Join(store, "template.raw")
			tr.write(base, "", atkOther)
			tr.qcow2(filepath.Join(store, "vm1.qcow2"), "template.raw", "raw", atkImage)
			tt.prep(tr, store)
			tr.expect(atkDisk("qcow2", "$ROOT/store/vm1.qcow2"), tr.env(), tt.msg, base)
		})
	}
}

// TestAdminStoreWritableFiles: QEMU writes data files and VMDK extents, so
// in the admin's store they still need the owner rule.
func TestAdminStoreWritableFiles(t *testing.T) {
	tr := newAtkTree(t)
	store := filepath.Join(tr.root, "store")
	ext := filepath.Join(store, "bob-flat.vmdk")
	tr.write(ext, "", atkOther)
	tr.vmdk(filepath.Join(store, "alice.vmdk"), []string{"bob-flat.vmdk"}, atkImage)
	err := tr.guard(atkDisk("vmdk", "$ROOT/store/alice.vmdk"), tr.env(), ext)
	wantRefusal(t, err, fmt.Sprintf("owned by uid %d", atkOther))
}

// TestLinkIntoRootOnlyDirectory: a user's symlink to their own file inside
// a directory only root may search must not make the hook open that
// directory to QEMU.
func TestLinkIntoRootOnlyDirectory(t *testing.T) {
	tests := []struct {
		name    string
		linkUID int
		msg     string
	}{
		{"user's link", atkImage, fmt.Sprintf("uid %d, who owns the symlink", atkImage)},
		{"root's link", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newAtkTree(t)
			vault := filepath.Join(tr.root, "vault")
			tr.mkdir(vault)
			if err := os.Chmod(vault, 0o700); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(vault, "mine.raw")
			tr.write(file, "", atkImage)
			link := filepath.Join(tr.img, "disk.raw")
			tr.symlink(file, link)
			if err := os.Lchown(link, tt.linkUID, tt.linkUID); err != nil {
				t.Fatal(err)
			}
			env := tr.env()
			env.ParentACL = true
			before := aclOf(t, vault)
			if !tr.expect(atkDisk("raw", "$ROOT/img/disk.raw"), env, tt.msg, file, vault) {
				return
			}
			if after := aclOf(t, vault); after != before {
				t.Errorf("ACL of %s changed from %s to %s", vault, before, after)
			}
		})
	}
}

func aclOf(t *testing.T, p string) string {
	t.Helper()
	h, err := owner.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a, err := acl.Get(h.Fd(), h.Stat.Mode)
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

// TestHeaderOwnerRuleUnderLock: bob's domain really runs (its prepare
// recorded bob.raw and gave it to QEMU); alice's header names bob.raw.
// The plan sees a QEMU-owned file and lets it pass, so it is prepare, under
// the journal's lock, that must refuse by bob's recorded ownership.
func TestHeaderOwnerRuleUnderLock(t *testing.T) {
	const bob = atkOther
	tr := newAtkTree(t)
	bobImg := filepath.Join(tr.img, "bob.raw")
	tr.write(bobImg, "bob's data", bob)
	tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "bob.raw", "raw", atkImage)
	bobs := strings.ReplaceAll(atkDisk("raw", "$ROOT/img/bob.raw"), "<name>vm</name>", "<name>bob</name>")
	pb, err := plan.Build(tr.parse(bobs), tr.env())
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	if err := tr.runner().Prepare(pb); err != nil {
		t.Fatal(err)
	}
	before := tr.owners()
	p, err := plan.Build(tr.parse(atkDisk("qcow2", "$ROOT/img/top.qcow2")), tr.env())
	if err != nil {
		t.Fatalf("plan of alice's domain = %v; the plan cannot know bob.raw's owner, prepare must", err)
	}
	defer p.Close()
	err = tr.runner().Prepare(p)
	wantRefusal(t, err, fmt.Sprintf("owned by uid %d", bob))
	tr.checkUnchanged(before)
	if err := tr.runner().Release("bob", "-"); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(bobImg, &st); err != nil || st.Uid != bob {
		t.Errorf("bob.raw after bob's release: uid %d (%v), want %d", st.Uid, err, bob)
	}
}
