package plan

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/sysfs"
)

const qemuUID, qemuGID = 64055, 994

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds trees with chown and mknod")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p string, data string, uid int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func env(root string) Env {
	return Env{
		Policy:       owner.Policy{Protected: []string{filepath.Join(root, "etc")}},
		Sys:          sysfs.Root{Sys: filepath.Join(root, "sys"), Dev: filepath.Join(root, "dev")},
		PoolDir:      filepath.Join(root, "pools"),
		MaxDepth:     8,
		RunAs:        config.Identity{UID: qemuUID, GID: qemuGID},
		ResolveLabel: config.ParseLabel,
		ParentACL:    true,
	}
}

// summary renders steps as "action kind path" lines with the temp root
// replaced, so expectations read like the plan a person sees.
func summary(p *Plan, root string) string {
	var b strings.Builder
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "%s %s %s", s.Action, s.Kind, strings.ReplaceAll(s.Path, root, "$ROOT"))
		if s.Target != nil && s.Action != SearchACL {
			fmt.Fprintf(&b, " ->%d:%d", s.Target.UID, s.Target.GID)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func build(t *testing.T, root, xml string, e Env) (*Plan, error) {
	t.Helper()
	d, err := domain.Parse([]byte(strings.ReplaceAll(xml, "$ROOT", root)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(d, e)
	if p != nil {
		t.Cleanup(p.Close)
	}
	return p, err
}

const head = `<domain type='qemu'><name>vm</name><memory>65536</memory><os><type>hvm</type></os>`

func TestBuild(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	must(t, os.Chmod(filepath.Dir(root), 0o755))
	t.Cleanup(func() { must(t, os.Chmod(filepath.Dir(root), 0o700)) })
	img := filepath.Join(root, "img")
	write(t, filepath.Join(img, "a.raw"), "", 1000)
	write(t, filepath.Join(img, "b.raw"), "", 1000)
	write(t, filepath.Join(img, "mine.raw"), "", qemuUID)
	must(t, os.Chown(filepath.Join(img, "mine.raw"), qemuUID, qemuGID))
	must(t, os.Symlink("a.raw", filepath.Join(img, "link-to-a.raw")))
	must(t, os.MkdirAll(filepath.Join(root, "pipes"), 0o755))
	for _, name := range []string{"p.in", "p.out", "single"} {
		p := filepath.Join(root, "pipes", name)
		if err := unix.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		must(t, os.Chown(p, 1000, 1000))
	}
	write(t, filepath.Join(root, "pool", "vol1.raw"), "", 1000)
	write(t, filepath.Join(root, "pools", "p1.xml"), "<pool type='dir'><name>p1</name><target><path>"+filepath.Join(root, "pool")+"</path></target></pool>", 0)
	write(t, filepath.Join(root, "pools", "iscsi.xml"), "<pool type='iscsi'><name>iscsi</name><source><host name='h'/><device path='iqn.x'/></source><target><path>/dev/disk/by-path</path></target></pool>", 0)
	write(t, filepath.Join(root, "boot", "vmlinuz"), "", 1000)
	// A fake USB device 1-2 at bus 1 device 4, and its node.
	usb := filepath.Join(root, "sys", "bus", "usb", "devices", "1-2")
	for name, val := range map[string]string{"busnum": "1", "devnum": "4", "idVendor": "0781", "idProduct": "5567", "dev": "189:3"} {
		write(t, filepath.Join(usb, name), val+"\n", 0)
	}
	node := filepath.Join(root, "dev", "bus", "usb", "001", "004")
	must(t, os.MkdirAll(filepath.Dir(node), 0o755))
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(189, 3))); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		xml  string
		want string
	}{
		{"file disks, keep, readonly", head + `<devices>
			<disk type='file' device='disk'><driver type='raw'/><source file='$ROOT/img/a.raw'/><target dev='vda'/></disk>
			<disk type='file' device='cdrom'><driver type='raw'/><source file='$ROOT/img/b.raw'/><target dev='hdc'/><readonly/></disk>
			<disk type='file' device='disk'><driver type='raw'/><source file='$ROOT/img/mine.raw'/><target dev='vdb'/></disk>
			</devices></domain>`,
			"chown disk $ROOT/img/a.raw ->64055:994\nchown cdrom $ROOT/img/b.raw ->64055:994\nkeep disk $ROOT/img/mine.raw ->64055:994\n"},
		{"same file twice is one step", head + `<devices>
			<disk type='file' device='disk'><source file='$ROOT/img/a.raw'/><target dev='vda'/></disk>
			<disk type='file' device='disk'><source file='$ROOT/img/link-to-a.raw'/><target dev='vdb'/></disk>
			</devices></domain>`,
			"chown disk $ROOT/img/a.raw ->64055:994\n"},
		{"domain relabel no", head + `<seclabel type='none' model='dac'/><devices>
			<disk type='file' device='disk'><source file='$ROOT/img/a.raw'/><target dev='vda'/></disk></devices></domain>`,
			"skip disk $ROOT/img/a.raw\n"},
		{"static label and per-disk opt-out", head + `<seclabel type='static' model='dac' relabel='yes'><label>+2000:+2001</label></seclabel><devices>
			<disk type='file' device='disk'><source file='$ROOT/img/a.raw'/><target dev='vda'/></disk>
			<disk type='file' device='disk'><source file='$ROOT/img/b.raw'><seclabel model='dac' relabel='no'/></source><target dev='vdb'/></disk>
			</devices></domain>`,
			"chown disk $ROOT/img/a.raw ->2000:2001\nskip disk $ROOT/img/b.raw\n"},
		{"per-disk label", head + `<devices>
			<disk type='file' device='disk'><source file='$ROOT/img/a.raw'><seclabel model='dac' relabel='yes'><label>+3000:+3000</label></seclabel></source><target dev='vda'/></disk>
			</devices></domain>`,
			"chown disk $ROOT/img/a.raw ->3000:3000\n"},
		{"label root means nothing to do", head + `<seclabel type='static' model='dac' relabel='yes'><label>+0:+0</label></seclabel><devices>
			<disk type='file' device='disk'><source file='$ROOT/img/a.raw'/><target dev='vda'/></disk></devices></domain>`,
			"skip disk $ROOT/img/a.raw\n"},
		{"pipe with in and out, and without", head + `<devices>
			<serial type='pipe'><source path='$ROOT/pipes/p'/><target port='0'/></serial>
			<channel type='pipe'><source path='$ROOT/pipes/single'/><target type='virtio' name='x'/></channel>
			</devices></domain>`,
			"chown chardev-pipe $ROOT/pipes/p.in ->64055:994\nchown chardev-pipe $ROOT/pipes/p.out ->64055:994\nchown chardev-pipe $ROOT/pipes/single ->64055:994\n"},
		{"pool volume", head + `<devices>
			<disk type='volume' device='disk'><source pool='p1' volume='vol1.raw'/><target dev='vda'/></disk></devices></domain>`,
			"chown disk $ROOT/pool/vol1.raw ->64055:994\n"},
		{"usb by vendor and product", head + `<devices>
			<hostdev mode='subsystem' type='usb'><source><vendor id='0x0781'/><product id='0x5567'/></source></hostdev></devices></domain>`,
			"chown usb $ROOT/dev/bus/usb/001/004 ->64055:994\n"},
		{"usb by address", head + `<devices>
			<hostdev mode='subsystem' type='usb'><source><address bus='1' device='4'/></source></hostdev></devices></domain>`,
			"chown usb $ROOT/dev/bus/usb/001/004 ->64055:994\n"},
		{"optional usb missing is skipped", head + `<devices>
			<hostdev mode='subsystem' type='usb'><source startupPolicy='optional'><vendor id='0x1234'/><product id='0x5678'/></source></hostdev></devices></domain>`,
			"skip usb \n"},
		{"kernel", `<domain type='qemu'><name>vm</name><memory>65536</memory><os><type>hvm</type><kernel>$ROOT/boot/vmlinuz</kernel></os></domain>`,
			"chown kernel $ROOT/boot/vmlinuz ->64055:994\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := build(t, root, tc.xml, env(root))
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(p, root); got != tc.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}

	errs := []struct {
		name, xml, want string
	}{
		{"missing disk names the path", head + `<devices><disk type='file' device='disk'><source file='$ROOT/img/nope.raw'/><target dev='vda'/></disk></devices></domain>`, "img/nope.raw"},
		{"missing usb", head + `<devices><hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0x5678'/></source></hostdev></devices></domain>`, "usb"},
		{"iscsi pool unsupported", head + `<devices><disk type='volume' device='disk'><source pool='iscsi' volume='x'/><target dev='vda'/></disk></devices></domain>`, "does not support"},
		{"missing pool", head + `<devices><disk type='volume' device='disk'><source pool='nopool' volume='x'/><target dev='vda'/></disk></devices></domain>`, "storage pool nopool"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build(t, root, tc.xml, env(root))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

// TestBackingChainMatchesQemuImg builds chains with qemu-img and checks the
// plan lists exactly the files `qemu-img info --backing-chain` names.
func TestBackingChainMatchesQemuImg(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	dir := filepath.Join(root, "img")
	must(t, os.MkdirAll(filepath.Join(dir, "base"), 0o755))
	// img is a dir pool's target, so header-named images may be in its
	// subdirectories, as libvirt's own pools have them.
	write(t, filepath.Join(root, "pools", "images.xml"), "<pool type='dir'><name>images</name><target><path>"+dir+"</path></target></pool>", 0)
	// raw ← qed (backing format raw, the only one QED records) ← qcow2 v3
	// with an absolute name ← qcow2 v2 with a relative one.
	qemuImg(t, "create", "-q", "-f", "raw", filepath.Join(dir, "base", "b0.raw"), "1M")
	qemuImg(t, "create", "-q", "-f", "qed", "-F", "raw", "-b", "b0.raw", filepath.Join(dir, "base", "b1.qed"))
	qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qed", "-b", filepath.Join(dir, "base", "b1.qed"), filepath.Join(dir, "b2.qcow2"))
	qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-F", "qcow2", "-b", "b2.qcow2", filepath.Join(dir, "top.qcow2"))
	out, err := exec.Command("qemu-img", "info", "--backing-chain", "-U", "--output=json", filepath.Join(dir, "top.qcow2")).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `"filename":`) {
			f := strings.Trim(strings.TrimSpace(strings.SplitN(line, ":", 2)[1]), `",`)
			want = append(want, f)
		}
	}
	p, err := build(t, root, head+`<devices><disk type='file' device='disk'><driver type='qcow2'/><source file='$ROOT/img/top.qcow2'/><target dev='vda'/></disk></devices></domain>`, env(root))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range p.Steps {
		if s.Kind != KindParentDir {
			got = append(got, s.Path)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan chain:\n%s\nqemu-img --backing-chain:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParentDirectories(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	must(t, os.Chmod(filepath.Dir(root), 0o755))
	t.Cleanup(func() { must(t, os.Chmod(filepath.Dir(root), 0o700)) })
	must(t, os.Chmod(root, 0o755))
	// home/alice is 0700 two levels above the image; group/ is searchable
	// through a supplementary group; acl/ has a mask that hides x.
	home := filepath.Join(root, "home", "alice")
	write(t, filepath.Join(home, "vms", "a.raw"), "", 1000)
	must(t, os.Chmod(home, 0o700))
	grp := filepath.Join(root, "group")
	write(t, filepath.Join(grp, "b.raw"), "", 1000)
	must(t, os.Chown(grp, 0, 4242))
	must(t, os.Chmod(grp, 0o710))
	xml := head + `<devices>
		<disk type='file' device='disk'><source file='$ROOT/home/alice/vms/a.raw'/><target dev='vda'/></disk>
		<disk type='file' device='disk'><source file='$ROOT/group/b.raw'/><target dev='vdb'/></disk></devices></domain>`
	e := env(root)
	e.RunAs.Groups = []uint32{4242}
	p, err := build(t, root, xml, e)
	if err != nil {
		t.Fatal(err)
	}
	want := "chown disk $ROOT/home/alice/vms/a.raw ->64055:994\nacl parent-dir $ROOT/home/alice\nchown disk $ROOT/group/b.raw ->64055:994\n"
	if got := summary(p, root); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	// Without the supplementary group, group/ needs an ACL too.
	e.RunAs.Groups = nil
	p, err = build(t, root, xml, e)
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(p, root); !strings.Contains(got, "acl parent-dir $ROOT/group\n") {
		t.Errorf("plan without the group:\n%s\nwant an ACL step for group/", got)
	}
	// Config off: prepare fails naming the directory and the fix.
	e.ParentACL = false
	_, err = build(t, root, xml, e)
	if err == nil || !strings.Contains(err.Error(), "setfacl -m u:64055:x "+home) {
		t.Errorf("Build with parent_search_acl off = %v, want the setfacl command for %s", err, home)
	}
}

// TestStateDirsForLabelledDomain: a domain with its own DAC uid gets search
// access to libvirt's state directory (owned by qemu.conf's user, 0750),
// and a domain running as qemu.conf's user needs nothing there.
func TestStateDirsForLabelledDomain(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	must(t, os.Chmod(filepath.Dir(root), 0o755))
	t.Cleanup(func() { must(t, os.Chmod(filepath.Dir(root), 0o700)) })
	state := filepath.Join(root, "lib", "qemu")
	must(t, os.MkdirAll(state, 0o755))
	must(t, os.Chmod(state, 0o750))
	must(t, os.Chown(state, qemuUID, qemuGID))
	e := env(root)
	e.StateDirs = []string{state, filepath.Join(root, "absent")}
	plain := `<domain type='qemu'><name>vm</name><memory>65536</memory><os><type>hvm</type></os>`
	p, err := build(t, root, plain+`</domain>`, e)
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(p, root); got != "" {
		t.Errorf("plan for qemu.conf's user:\n%s\nwant nothing", got)
	}
	p, err = build(t, root, plain+`<seclabel type='static' model='dac' relabel='yes'><label>+2000:+2000</label></seclabel></domain>`, e)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := summary(p, root), "acl parent-dir $ROOT/lib/qemu\n"; got != want {
		t.Errorf("plan for a labelled domain:\n%s\nwant:\n%s", got, want)
	}
}

// TestExternalDataFile: QEMU opens a qcow2 image's external data file, so
// the plan lists it, resolved against the image's directory.
func TestExternalDataFile(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	dir := filepath.Join(root, "img")
	must(t, os.MkdirAll(dir, 0o755))
	qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data.bin"), filepath.Join(dir, "top.qcow2"), "1M")
	p, err := build(t, root, head+`<devices><disk type='file' device='disk'><driver type='qcow2'/><source file='$ROOT/img/top.qcow2'/><target dev='vda'/></disk></devices></domain>`, env(root))
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(p, root); !strings.Contains(got, "chown data-file $ROOT/img/data.bin") {
		t.Errorf("plan:\n%s\nwant the external data file listed", got)
	}
}
