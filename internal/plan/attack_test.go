package plan_test

// Attacks on plan building: image headers, symlinks, hard links,
// device nodes and directory swaps that try to get a file the hook must
// never touch handed to QEMU. Every case runs against a real tree under
// t.TempDir(), with "<root>/etc" standing in for a protected directory,
// and ends by checking that no file in the tree changed owner. When Build
// wrongly succeeds, the plan is carried out with apply.Runner.Prepare, as
// the hook would, so the ownership check shows the real damage.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/sysfs"
)

const (
	atkQEMU  = 64055 // the QEMU user and group of these tests
	atkImage = 1000  // owner of the images the XML names
	atkOther = 4321  // a user that is neither root, QEMU nor the image owner
)

// atkTree is a temp tree: root/etc is protected, root/img holds images,
// root/state the journal.
type atkTree struct {
	t              *testing.T
	root, etc, img string
	secret         string // root/etc/secret, owned by root
	state          string
	sys            sysfs.Root
}

func newAtkTree(t *testing.T) *atkTree {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds trees with chown and mknod and carries plans out")
	}
	root := t.TempDir()
	// t.TempDir makes its directories 0700; QEMU must be able to search
	// the way to the images or the plan wants ACLs we do not test here.
	for _, d := range []string{root, filepath.Dir(root)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tr := &atkTree{
		t: t, root: root, etc: filepath.Join(root, "etc"), img: filepath.Join(root, "img"),
		state: filepath.Join(root, "state"),
		sys:   sysfs.Root{Sys: filepath.Join(root, "sys"), Dev: filepath.Join(root, "dev")},
	}
	// The images' directory belongs to their owner, as a user's own
	// image directory does; one only root can write is the admin's
	// store, where other rules apply (TestAdminStore).
	tr.mkdir(tr.img)
	if err := os.Chown(tr.img, atkImage, atkImage); err != nil {
		t.Fatal(err)
	}
	tr.secret = filepath.Join(tr.etc, "secret")
	tr.write(tr.secret, "root:secret\n", 0)
	tr.write(filepath.Join(tr.etc, "sub", "x"), "", 0)
	tr.write(filepath.Join(tr.etc, "alice"), "", atkOther)
	return tr
}

func (tr *atkTree) mkdir(p string) {
	tr.t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *atkTree) write(p, data string, uid int) {
	tr.t.Helper()
	tr.mkdir(filepath.Dir(p))
	if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *atkTree) symlink(target, p string) {
	tr.t.Helper()
	tr.mkdir(filepath.Dir(p))
	if err := os.Symlink(target, p); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *atkTree) mknod(p string, mode uint32, major, minor uint32) {
	tr.t.Helper()
	tr.mkdir(filepath.Dir(p))
	if err := unix.Mknod(p, mode|0o600, int(unix.Mkdev(major, minor))); err != nil {
		tr.t.Fatalf("mknod %s: %v", p, err)
	}
}

// qcow2 writes a minimal qcow2 v3 image at p whose header names backing
// (with format bfmt, or no backing format extension when bfmt is ""),
// owned by uid. Only the header matters: the plan reads nothing else.
func (tr *atkTree) qcow2(p, backing, bfmt string, uid int) {
	tr.t.Helper()
	b := make([]byte, 4096)
	be := binary.BigEndian
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], 3)      // version
	be.PutUint32(b[20:], 16)    // cluster bits
	be.PutUint64(b[24:], 1<<20) // virtual size
	be.PutUint32(b[100:], 112)  // header length
	off := 112
	if bfmt != "" {
		be.PutUint32(b[off:], 0xe2792aca) // backing format extension
		be.PutUint32(b[off+4:], uint32(len(bfmt)))
		copy(b[off+8:], bfmt)
		off += 8 + (len(bfmt)+7)&^7
	}
	be.PutUint32(b[off:], 0) // end of extensions
	if backing != "" {
		be.PutUint64(b[8:], 1024)
		be.PutUint32(b[16:], uint32(len(backing)))
		copy(b[1024:], backing)
	}
	tr.write(p, string(b), uid)
}

// owners maps every path in the tree (but the journal) to "uid:gid".
func (tr *atkTree) owners() map[string]string {
	tr.t.Helper()
	m := make(map[string]string)
	err := filepath.WalkDir(tr.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == tr.state {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		m[p] = fmt.Sprintf("%d:%d", st.Uid, st.Gid)
		return nil
	})
	if err != nil {
		tr.t.Fatal(err)
	}
	return m
}

// checkUnchanged fails for every path whose owner differs from before.
func (tr *atkTree) checkUnchanged(before map[string]string) {
	tr.t.Helper()
	after := tr.owners()
	for p, o := range before {
		if a, ok := after[p]; ok && a != o {
			tr.t.Errorf("owner of %s changed from %s to %s", p, o, a)
		}
	}
}

func (tr *atkTree) env() plan.Env {
	return plan.Env{
		// The lookups read the fake tree; the policy's own checks the
		// real kernel's loop devices and disks, which these tests attach.
		Policy:       owner.Policy{Protected: []string{tr.etc}, ConfigPath: "test.conf", SysRoot: "/sys"},
		Sys:          tr.sys,
		PoolDir:      filepath.Join(tr.root, "pools"),
		MaxDepth:     8,
		RunAs:        config.Identity{UID: atkQEMU, GID: atkQEMU, Groups: []uint32{atkQEMU}},
		ResolveLabel: config.ParseLabel,
	}
}

func (tr *atkTree) runner() *apply.Runner {
	tr.t.Helper()
	st, err := journal.Open(tr.state, 5*time.Second)
	if err != nil {
		tr.t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	return &apply.Runner{Store: st, Log: log}
}

func (tr *atkTree) parse(xml string) *domain.Domain {
	tr.t.Helper()
	d, err := domain.Parse([]byte(strings.ReplaceAll(xml, "$ROOT", tr.root)))
	if err != nil {
		tr.t.Fatalf("domain.Parse: %v", err)
	}
	return d
}

// attempt builds the plan for xml and, if that succeeds, carries it out
// like the hook would (so that a missed refusal shows as changed owners).
func (tr *atkTree) attempt(xml string, env plan.Env) (*plan.Plan, error) {
	tr.t.Helper()
	p, err := plan.Build(tr.parse(xml), env)
	if err != nil {
		return nil, err
	}
	tr.t.Cleanup(p.Close)
	if perr := tr.runner().Prepare(p); perr != nil {
		tr.t.Logf("Prepare after an unexpected plan: %v", perr)
	}
	return p, nil
}

func atkDisk(format, path string) string {
	return `<domain type='qemu'><name>vm</name><memory>65536</memory><os><type>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='` + format + `'/><source file='` + path + `'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>`
}

func atkUSB(bus, dev int) string {
	return fmt.Sprintf(`<domain type='qemu'><name>vm</name><memory>65536</memory><os><type>hvm</type></os><devices>
<hostdev mode='subsystem' type='usb'><source><address bus='%d' device='%d'/></source></hostdev>
</devices></domain>`, bus, dev)
}

// fakeUSB adds USB device 1-2 at bus 1 device 3 to the fake sysfs; its
// node must be char 189:2. The node itself is up to the caller.
func (tr *atkTree) fakeUSB() (node string) {
	dir := filepath.Join(tr.sys.Sys, "bus", "usb", "devices", "1-2")
	for name, val := range map[string]string{"busnum": "1", "devnum": "3", "idVendor": "0781", "idProduct": "5567", "dev": "189:2"} {
		tr.write(filepath.Join(dir, name), val+"\n", 0)
	}
	return filepath.Join(tr.sys.Dev, "bus", "usb", "001", "003")
}

func TestAttackRefused(t *testing.T) {
	tests := []struct {
		name string
		// setup builds the attack and returns the domain XML ($ROOT is the
		// tree) and the env to plan with.
		setup func(tr *atkTree, env *plan.Env) string
		// wantPath must appear in the error ($ROOT replaced); wantMsg too.
		wantPath, wantMsg string
		// refused: the error must wrap owner.ErrRefused.
		refused bool
	}{
		{
			name: "header names protected file",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), tr.secret, "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/etc/secret", wantMsg: "protected directory", refused: true,
		},
		{
			name: "header names symlink to protected file",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.symlink(tr.secret, filepath.Join(tr.img, "innocent.raw"))
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "innocent.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/etc/secret", wantMsg: "protected directory", refused: true,
		},
		{
			name: "header names symlinked directory holding protected file",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.symlink(tr.etc, filepath.Join(tr.img, "bases"))
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "bases/secret", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/etc/secret", wantMsg: "protected directory", refused: true,
		},
		{
			name: "relative backing name escapes with ..",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.qcow2(filepath.Join(tr.img, "vm", "top.qcow2"), "../../etc/secret", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/vm/top.qcow2")
			},
			wantPath: "$ROOT/etc/secret", wantMsg: "protected directory", refused: true,
		},
		{
			// QEMU (path_combine) and libvirt join a relative backing name
			// to the image's directory without cleaning it, so the kernel
			// resolves "lnk/.." from wherever lnk points. Lexically the name
			// is the harmless $ROOT/img/vm/secret, which exists too.
			name: "relative backing name with .. after a symlinked directory",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.symlink(filepath.Join(tr.etc, "sub"), filepath.Join(tr.img, "vm", "lnk"))
				tr.write(filepath.Join(tr.img, "vm", "secret"), "decoy", 0)
				tr.qcow2(filepath.Join(tr.img, "vm", "top.qcow2"), "lnk/../secret", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/vm/top.qcow2")
			},
			wantPath: "$ROOT/etc/secret", wantMsg: "protected directory", refused: true,
		},
		{
			// A root-owned file anywhere (/root/.bashrc) must not be
			// reachable by rewriting a header: only files beside the
			// images the XML names, or in backing_paths.
			name: "header names a root-owned file outside the image directories",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(filepath.Join(tr.root, "home", "bashrc"), "", 0)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), filepath.Join(tr.root, "home", "bashrc"), "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/home/bashrc", wantMsg: "neither in the directory of the image naming it", refused: true,
		},
		{
			// A missing optional cdrom named in / must not make / a place
			// header-named files may live: only opened images count.
			name: "missing cdrom in / does not widen the allowed places",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(filepath.Join(tr.root, "srv", "rootfile"), "", 0)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), filepath.Join(tr.root, "srv", "rootfile"), "raw", atkImage)
				return strings.Replace(atkDisk("qcow2", "$ROOT/img/top.qcow2"), "</devices>",
					"<disk type='file' device='cdrom'><source file='/missing-dachook.iso' startupPolicy='optional'/><target dev='hdc'/><readonly/></disk></devices>", 1)
			},
			wantPath: "$ROOT/srv/rootfile", wantMsg: "neither in the directory of the image naming it", refused: true,
		},
		{
			// An image directory that is a home: its dotfiles are not
			// backing files, whoever owns them.
			name: "header names a hidden file beside the image",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(filepath.Join(tr.img, ".ssh", "authorized_keys"), "", atkImage)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), ".ssh/authorized_keys", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/img/.ssh/authorized_keys", wantMsg: "hidden files excluded", refused: true,
		},
		{
			// In a sticky world-writable directory anyone could have put
			// the file a forged header names.
			name: "image in a sticky world-writable directory",
			setup: func(tr *atkTree, env *plan.Env) string {
				tmp := filepath.Join(tr.root, "tmp")
				tr.mkdir(tmp)
				if err := unix.Chmod(tmp, 0o1777); err != nil {
					t.Fatal(err)
				}
				tr.write(filepath.Join(tmp, "planted"), "", atkImage)
				tr.qcow2(filepath.Join(tmp, "top.qcow2"), "planted", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/tmp/top.qcow2")
			},
			wantPath: "$ROOT/tmp/planted", wantMsg: "neither in the directory of the image naming it", refused: true,
		},
		{
			name: "header names block device",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.mknod(filepath.Join(tr.img, "blk"), unix.S_IFBLK, 7, 250)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), filepath.Join(tr.img, "blk"), "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/img/blk", wantMsg: "is a block device, expected regular file", refused: true,
		},
		{
			name: "header names a /dev/null-like char device",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.mknod(filepath.Join(tr.img, "null"), unix.S_IFCHR, 1, 3)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "null", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/img/null", wantMsg: "is a character device", refused: true,
		},
		{
			name: "header names file of another user",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(filepath.Join(tr.img, "alice.raw"), "", atkOther)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "alice.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/img/alice.raw", wantMsg: fmt.Sprintf("owned by uid %d", atkOther), refused: true,
		},
		{
			name: "header names file of another user deeper in the chain",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(filepath.Join(tr.img, "alice.raw"), "", atkOther)
				tr.qcow2(filepath.Join(tr.img, "mid.qcow2"), "alice.raw", "raw", 0)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "mid.qcow2", "qcow2", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/img/alice.raw", wantMsg: fmt.Sprintf("owned by uid %d", atkOther), refused: true,
		},
		{
			name: "header names file outside backing_paths",
			setup: func(tr *atkTree, env *plan.Env) string {
				env.BackingPaths = []string{filepath.Join(tr.img, "bases")}
				tr.write(filepath.Join(tr.img, "bases", "ok.raw"), "", 0)
				tr.write(filepath.Join(tr.root, "other", "base.raw"), "", 0)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "../other/base.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/other/base.raw", wantMsg: "outside backing_paths", refused: true,
		},
		{
			name: "header names symlink out of backing_paths",
			setup: func(tr *atkTree, env *plan.Env) string {
				env.BackingPaths = []string{filepath.Join(tr.img, "bases")}
				tr.write(filepath.Join(tr.root, "other", "base.raw"), "", 0)
				tr.symlink(filepath.Join(tr.root, "other", "base.raw"), filepath.Join(tr.img, "bases", "base.raw"))
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "bases/base.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/other/base.raw", wantMsg: "outside backing_paths", refused: true,
		},
		{
			name: "backing_paths is a directory, not a prefix",
			setup: func(tr *atkTree, env *plan.Env) string {
				env.BackingPaths = []string{filepath.Join(tr.img, "bases")}
				tr.write(filepath.Join(tr.img, "bases-evil", "base.raw"), "", 0)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "bases-evil/base.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/img/bases-evil/base.raw", wantMsg: "outside backing_paths", refused: true,
		},
		{
			name: "chain loops a to b to a",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.qcow2(filepath.Join(tr.img, "a.qcow2"), "b.qcow2", "qcow2", atkImage)
				tr.qcow2(filepath.Join(tr.img, "b.qcow2"), "a.qcow2", "qcow2", atkImage)
				return atkDisk("qcow2", "$ROOT/img/a.qcow2")
			},
			wantPath: "$ROOT/img/a.qcow2", wantMsg: "loops",
		},
		{
			name: "image names itself",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.qcow2(filepath.Join(tr.img, "a.qcow2"), "a.qcow2", "qcow2", atkImage)
				return atkDisk("qcow2", "$ROOT/img/a.qcow2")
			},
			wantPath: "$ROOT/img/a.qcow2", wantMsg: "loops",
		},
		{
			name: "loop through a hard link",
			setup: func(tr *atkTree, env *plan.Env) string {
				env.Policy.AllowHardlinks = true
				tr.qcow2(filepath.Join(tr.img, "a.qcow2"), "a-again.qcow2", "qcow2", atkImage)
				if err := os.Link(filepath.Join(tr.img, "a.qcow2"), filepath.Join(tr.img, "a-again.qcow2")); err != nil {
					tr.t.Fatal(err)
				}
				return atkDisk("qcow2", "$ROOT/img/a.qcow2")
			},
			wantPath: "$ROOT/img/a-again.qcow2", wantMsg: "loops",
		},
		{
			name: "chain deeper than max_backing_depth",
			setup: func(tr *atkTree, env *plan.Env) string {
				env.MaxDepth = 3
				for i := range 4 {
					tr.qcow2(filepath.Join(tr.img, fmt.Sprintf("c%d.qcow2", i)), fmt.Sprintf("c%d.qcow2", i+1), "qcow2", atkImage)
				}
				tr.write(filepath.Join(tr.img, "c4.qcow2"), "", atkImage)
				return atkDisk("qcow2", "$ROOT/img/c0.qcow2")
			},
			wantPath: "$ROOT/img/c3.qcow2", wantMsg: "deeper than 3",
		},
		{
			name: "backing format not recorded",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(filepath.Join(tr.img, "base.raw"), "", atkImage)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "base.raw", "", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/img/top.qcow2", wantMsg: "format of backing file \"base.raw\" is not recorded",
		},
		{
			name: "vmdk extent names protected file",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(filepath.Join(tr.img, "d.vmdk"), "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 2048 FLAT \"../etc/secret\" 0\n", atkImage)
				return atkDisk("vmdk", "$ROOT/img/d.vmdk")
			},
			wantPath: "$ROOT/etc/secret", wantMsg: "protected directory", refused: true,
		},
		{
			name: "disk is a symlink to a protected file",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.symlink("../etc/secret", filepath.Join(tr.img, "disk.raw"))
				return atkDisk("raw", "$ROOT/img/disk.raw")
			},
			wantPath: "$ROOT/etc/secret", wantMsg: "protected directory", refused: true,
		},
		{
			name: "disk is a hard link to a protected file",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.mkdir(tr.img)
				if err := os.Link(tr.secret, filepath.Join(tr.img, "disk.raw")); err != nil {
					tr.t.Fatal(err)
				}
				return atkDisk("raw", "$ROOT/img/disk.raw")
			},
			wantPath: "$ROOT/img/disk.raw", wantMsg: "2 hard links", refused: true,
		},
		{
			name: "backing file is a hard link to a protected file",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.mkdir(tr.img)
				if err := os.Link(tr.secret, filepath.Join(tr.img, "base.raw")); err != nil {
					tr.t.Fatal(err)
				}
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "base.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			wantPath: "$ROOT/img/base.raw", wantMsg: "2 hard links", refused: true,
		},
		{
			name: "usb node is a symlink to a protected file",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.symlink(tr.secret, tr.fakeUSB())
				return atkUSB(1, 3)
			},
			wantPath: "$ROOT/etc/secret", wantMsg: "protected directory", refused: true,
		},
		{
			name: "usb node is a symlink to a /dev/null-like node",
			setup: func(tr *atkTree, env *plan.Env) string {
				null := filepath.Join(tr.root, "devnull")
				tr.mknod(null, unix.S_IFCHR, 1, 3)
				tr.symlink(null, tr.fakeUSB())
				return atkUSB(1, 3)
			},
			wantPath: "$ROOT/devnull", wantMsg: "is device 1:3, expected 189:2", refused: true,
		},
		{
			name: "usb node has the wrong device number",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.mknod(tr.fakeUSB(), unix.S_IFCHR, 189, 99)
				return atkUSB(1, 3)
			},
			wantPath: "$ROOT/dev/bus/usb/001/003", wantMsg: "is device 189:99, expected 189:2", refused: true,
		},
		{
			name: "usb node is a block device",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.mknod(tr.fakeUSB(), unix.S_IFBLK, 189, 2)
				return atkUSB(1, 3)
			},
			wantPath: "$ROOT/dev/bus/usb/001/003", wantMsg: "is a block device", refused: true,
		},
		{
			name: "usb node is a regular file",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(tr.fakeUSB(), "", 0)
				return atkUSB(1, 3)
			},
			wantPath: "$ROOT/dev/bus/usb/001/003", wantMsg: "is a regular file", refused: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newAtkTree(t)
			env := tr.env()
			xml := tt.setup(tr, &env)
			before := tr.owners()
			p, err := tr.attempt(xml, env)
			tr.checkUnchanged(before)
			if err == nil {
				t.Fatalf("Build succeeded, want an error naming %s; plan:\n%s", tt.wantPath, atkSummary(p, tr.root))
			}
			msg := err.Error()
			if want := strings.ReplaceAll(tt.wantPath, "$ROOT", tr.root); !strings.Contains(msg, want+" ") && !strings.HasSuffix(msg, want) && !strings.Contains(msg, want+":") && !strings.Contains(msg, want+",") {
				t.Errorf("error does not name %s:\n%s", tt.wantPath, strings.ReplaceAll(msg, tr.root, "$ROOT"))
			}
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error does not say %q:\n%s", tt.wantMsg, strings.ReplaceAll(msg, tr.root, "$ROOT"))
			}
			if tt.refused && !errors.Is(err, owner.ErrRefused) {
				t.Errorf("error does not wrap owner.ErrRefused: %v", err)
			}
			var se *plan.StepError
			if !errors.As(err, &se) {
				t.Errorf("error is %T, want a *plan.StepError", err)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			// The dry run shows the same problem as an error step instead
			// of failing, and changes nothing either.
			env.Tolerant = true
			dp, derr := plan.Build(tr.parse(xml), env)
			if derr != nil {
				t.Fatalf("tolerant Build: %v", derr)
			}
			defer dp.Close()
			found := false
			for _, s := range dp.Steps {
				found = found || s.Action == plan.Error
			}
			if !found {
				t.Errorf("tolerant plan has no error step:\n%s", atkSummary(dp, tr.root))
			}
			tr.checkUnchanged(before)
		})
	}
}

func atkSummary(p *plan.Plan, root string) string {
	if p == nil {
		return "(nil)"
	}
	var b strings.Builder
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "  %s %s %s %s\n", s.Action, s.Kind, strings.ReplaceAll(s.Path, root, "$ROOT"), strings.ReplaceAll(s.Reason, root, "$ROOT"))
	}
	return b.String()
}

// TestAttackControls are the same shapes made legitimate: each must build
// and name exactly the files expected, so the refusals above are due to
// the attack and not to something else in the setup.
func TestAttackControls(t *testing.T) {
	tests := []struct {
		name  string
		setup func(tr *atkTree, env *plan.Env) string
		want  []string // step paths, $ROOT relative, in order
	}{
		{
			name: "backing owned by root",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(filepath.Join(tr.img, "base.raw"), "", 0)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "base.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			want: []string{"$ROOT/img/top.qcow2", "$ROOT/img/base.raw"},
		},
		{
			name: "another user's backing with backing_any_owner",
			setup: func(tr *atkTree, env *plan.Env) string {
				env.AnyBackingOwner = true
				tr.write(filepath.Join(tr.img, "alice.raw"), "", atkOther)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "alice.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			want: []string{"$ROOT/img/top.qcow2", "$ROOT/img/alice.raw"},
		},
		{
			name: "backing owned by the QEMU user",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.write(filepath.Join(tr.img, "base.raw"), "", atkQEMU)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "base.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			want: []string{"$ROOT/img/top.qcow2", "$ROOT/img/base.raw"},
		},
		{
			name: "inside backing_paths",
			setup: func(tr *atkTree, env *plan.Env) string {
				env.BackingPaths = []string{filepath.Join(tr.img, "bases")}
				tr.write(filepath.Join(tr.img, "bases", "base.raw"), "", 0)
				tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "bases/base.raw", "raw", atkImage)
				return atkDisk("qcow2", "$ROOT/img/top.qcow2")
			},
			want: []string{"$ROOT/img/top.qcow2", "$ROOT/img/bases/base.raw"},
		},
		{
			name: "chain exactly max_backing_depth images long",
			setup: func(tr *atkTree, env *plan.Env) string {
				env.MaxDepth = 3
				tr.qcow2(filepath.Join(tr.img, "c0.qcow2"), "c1.qcow2", "qcow2", atkImage)
				tr.qcow2(filepath.Join(tr.img, "c1.qcow2"), "c2.qcow2", "qcow2", atkImage)
				tr.qcow2(filepath.Join(tr.img, "c2.qcow2"), "", "", atkImage)
				return atkDisk("qcow2", "$ROOT/img/c0.qcow2")
			},
			want: []string{"$ROOT/img/c0.qcow2", "$ROOT/img/c1.qcow2", "$ROOT/img/c2.qcow2"},
		},
		{
			// QEMU resolves "lnk/../base.raw" from where lnk points; the
			// plan must hold that file, not the lexically cleaned name.
			name: "relative backing name with .. after a symlinked directory",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.mkdir(filepath.Join(tr.root, "deep", "a"))
				tr.symlink(filepath.Join(tr.root, "deep", "a"), filepath.Join(tr.img, "vm", "lnk"))
				tr.write(filepath.Join(tr.root, "deep", "base.raw"), "", 0)
				tr.write(filepath.Join(tr.img, "vm", "base.raw"), "", 0)
				tr.qcow2(filepath.Join(tr.img, "vm", "top.qcow2"), "lnk/../base.raw", "raw", atkImage)
				env.BackingPaths = []string{filepath.Join(tr.root, "deep")}
				return atkDisk("qcow2", "$ROOT/img/vm/top.qcow2")
			},
			want: []string{"$ROOT/img/vm/top.qcow2", "$ROOT/deep/base.raw"},
		},
		{
			name: "usb node with the right number",
			setup: func(tr *atkTree, env *plan.Env) string {
				tr.mknod(tr.fakeUSB(), unix.S_IFCHR, 189, 2)
				return atkUSB(1, 3)
			},
			want: []string{"$ROOT/dev/bus/usb/001/003"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newAtkTree(t)
			env := tr.env()
			xml := tt.setup(tr, &env)
			p, err := plan.Build(tr.parse(xml), env)
			if err != nil {
				t.Fatalf("Build: %v", strings.ReplaceAll(err.Error(), tr.root, "$ROOT"))
			}
			defer p.Close()
			var got []string
			for _, s := range p.Steps {
				got = append(got, strings.ReplaceAll(s.Path, tr.root, "$ROOT"))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("plan steps:\n%s\nwant paths %q", atkSummary(p, tr.root), tt.want)
			}
		})
	}
}

// TestAttackFormatNotRecordedQemuImg makes the image with qemu-img, which
// refuses to leave the backing format out, and then hides the extension
// (an unknown magic is skipped by QEMU and by the parser).
func TestAttackFormatNotRecordedQemuImg(t *testing.T) {
	qi, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	tr := newAtkTree(t)
	tr.mkdir(tr.img)
	base, top := filepath.Join(tr.img, "base.raw"), filepath.Join(tr.img, "top.qcow2")
	for _, args := range [][]string{
		{"create", "-q", "-f", "raw", base, "1M"},
		{"create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top},
	} {
		if out, err := exec.Command(qi, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	b, err := os.ReadFile(top)
	if err != nil {
		t.Fatal(err)
	}
	magic := []byte{0xe2, 0x79, 0x2a, 0xca}
	i := strings.Index(string(b[:4096]), string(magic))
	if i < 0 {
		t.Fatalf("qemu-img wrote no backing format extension into %s", top)
	}
	copy(b[i:], []byte{0x0b, 0xad, 0xf0, 0x0d})
	if err := os.WriteFile(top, b, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{base, top} {
		if err := os.Chown(p, atkImage, atkImage); err != nil {
			t.Fatal(err)
		}
	}
	before := tr.owners()
	_, err = tr.attempt(atkDisk("qcow2", "$ROOT/img/top.qcow2"), tr.env())
	tr.checkUnchanged(before)
	if err == nil {
		t.Fatalf("Build succeeded for an image without a recorded backing format")
	}
	if !strings.Contains(err.Error(), "is not recorded") || !strings.Contains(err.Error(), top) || !strings.Contains(err.Error(), "qemu-img rebase -u -F") {
		t.Errorf("error = %q, want it to name %s, say the format is not recorded and how to fix it", err, top)
	}
}

// TestAttackSwapBetweenPlanAndApply replaces a path between Build and
// Prepare so that it resolves into the protected directory. Prepare must
// change the inode the plan holds, never the file the path names now; the
// following release must not touch the protected file either.
func TestAttackSwapBetweenPlanAndApply(t *testing.T) {
	tests := []struct {
		name string
		swap func(tr *atkTree)
	}{
		{"directory component replaced by a symlink", func(tr *atkTree) {
			vm := filepath.Join(tr.img, "vm")
			// os.Rename refuses to replace a directory, even an empty one.
			if err := os.Remove(vm + ".orig"); err != nil {
				tr.t.Fatal(err)
			}
			if err := os.Rename(vm, vm+".orig"); err != nil {
				tr.t.Fatal(err)
			}
			tr.symlink(tr.etc, vm)
		}},
		{"file replaced by a symlink", func(tr *atkTree) {
			p := filepath.Join(tr.img, "vm", "disk.raw")
			if err := os.Rename(p, filepath.Join(tr.img, "vm.orig", "disk.raw")); err != nil {
				tr.t.Fatal(err)
			}
			tr.symlink(filepath.Join(tr.etc, "disk.raw"), p)
		}},
		{"file replaced by a hard link", func(tr *atkTree) {
			p := filepath.Join(tr.img, "vm", "disk.raw")
			if err := os.Rename(p, filepath.Join(tr.img, "vm.orig", "disk.raw")); err != nil {
				tr.t.Fatal(err)
			}
			if err := os.Link(filepath.Join(tr.etc, "disk.raw"), p); err != nil {
				tr.t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newAtkTree(t)
			tr.write(filepath.Join(tr.img, "vm", "disk.raw"), "guest", atkImage)
			tr.write(filepath.Join(tr.etc, "disk.raw"), "protected", 0)
			tr.mkdir(filepath.Join(tr.img, "vm.orig"))
			protected := filepath.Join(tr.etc, "disk.raw")
			var orig unix.Stat_t
			if err := unix.Stat(filepath.Join(tr.img, "vm", "disk.raw"), &orig); err != nil {
				t.Fatal(err)
			}

			p, err := plan.Build(tr.parse(atkDisk("raw", "$ROOT/img/vm/disk.raw")), tr.env())
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			defer p.Close()
			if len(p.Steps) != 1 || p.Steps[0].Action != plan.Chown {
				t.Fatalf("plan:\n%s\nwant one chown", atkSummary(p, tr.root))
			}
			tt.swap(tr)
			before := tr.owners()

			r := tr.runner()
			if err := r.Prepare(p); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if got := atkOwnerOf(t, protected); got != "0:0" {
				t.Errorf("protected %s is %s after Prepare, want 0:0", protected, got)
			}
			// The held inode, wherever it is now, is what QEMU's file was.
			moved := filepath.Join(tr.img, "vm.orig", "disk.raw")
			var now unix.Stat_t
			if err := unix.Stat(moved, &now); err != nil {
				t.Fatal(err)
			}
			if now.Ino != orig.Ino {
				t.Fatalf("test setup: %s is not the planned inode", moved)
			}
			if got, want := atkOwnerOf(t, moved), fmt.Sprintf("%d:%d", atkQEMU, atkQEMU); got != want {
				t.Errorf("planned inode (now %s) is %s after Prepare, want %s", moved, got, want)
			}
			for p, o := range before {
				if p == moved {
					continue
				}
				if got := atkOwnerOf(t, p); got != o {
					t.Errorf("Prepare changed %s from %s to %s", p, o, got)
				}
			}

			if err := r.Release("vm", "-"); err != nil {
				t.Logf("Release: %v", err)
			}
			if got := atkOwnerOf(t, protected); got != "0:0" {
				t.Errorf("protected %s is %s after Release, want 0:0", protected, got)
			}
		})
	}
}

func atkOwnerOf(t *testing.T, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}
