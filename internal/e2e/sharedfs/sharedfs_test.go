//go:build e2e

package sharedfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/testenv"
)

// Accounts: QEMU's user, and the owners of the images.
const (
	qemuID  = 64055
	baseUID = 1201 // owner of the shared base image
	diskUID = 1202 // owner of the overlays
)

type owner [2]uint32

func (o owner) String() string { return fmt.Sprintf("%d:%d", o[0], o[1]) }

var (
	qemu     = owner{qemuID, qemuID}
	baseOrig = owner{baseUID, 2201}
	diskOrig = owner{diskUID, 2202}
	rootOwn  = owner{0, 0}
)

// hookBin is the hook binary built for the run.
var hookBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "sharedfs: needs root (mounts, chowns); skipped")
		return 0
	}
	if bin := os.Getenv("LIBVIRT_DAC_HOOK_SHAREDFS_BIN"); bin != "" {
		// Another build (an older version, to see what it gets wrong).
		hookBin = bin
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "dachook-sharedfs-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	hookBin = filepath.Join(tmp, "libvirt-dac-hook")
	build := exec.Command("go", "build", "-o", hookBin, "../../../hook")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the hook: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// mode is how libvirt's own DAC driver is set up.
type mode struct {
	name        string
	cooperative bool // dynamic_ownership = 1: libvirt chowns too
}

var modes = []mode{{"strict", false}, {"cooperative", true}}

// host is one hypervisor: its own state directory, host id and config.
type host struct {
	t    *testing.T
	name string
	conf string
	log  string
	mode mode
	// libvirtSeesShared: libvirt itself knows the storage is shared (by
	// type, as GlusterFS) and so leaves its labels alone after a migration.
	libvirtSeesShared bool
}

func newHost(t *testing.T, root, name string, m mode, shared []string) *host {
	t.Helper()
	dir := filepath.Join(root, name)
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "host-id"), []byte(name+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	do := 0
	if m.cooperative {
		do = 1
	}
	var list []string
	for _, s := range shared {
		list = append(list, fmt.Sprintf("%q", s))
	}
	qconf := filepath.Join(dir, "qemu.conf")
	write(t, qconf, fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\ndynamic_ownership = %d\nremember_owner = 0\nshared_filesystems = [ %s ]\n",
		qemuID, qemuID, do, strings.Join(list, ", ")))
	h := &host{t: t, name: name, conf: filepath.Join(dir, "hook.conf"), log: filepath.Join(dir, "hook.log"), mode: m,
		libvirtSeesShared: len(shared) == 0}
	write(t, h.conf, fmt.Sprintf("qemu_conf = %q\nstate_dir = %q\nlog_file = %q\nsyslog = 0\nlive_watch = 0\nlock_timeout = 10\nlog_level = \"debug\"\n",
		qconf, state, h.log))
	return h
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs the hook binary on this host.
func (h *host) run(stdin string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(hookBin, args...)
	cmd.Env = append(os.Environ(), "LIBVIRT_DAC_HOOK_CONFIG="+h.conf)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// call runs one hook call as libvirtd does; it must write nothing to
// stdout.
func (h *host) call(vm *vm, op, sub, extra string) error {
	h.t.Helper()
	out, errOut, err := h.run(vm.xml(), vm.name, op, sub, extra)
	if out != "" {
		h.t.Errorf("%s: hook %s %s %s wrote to stdout: %q", h.name, vm.name, op, sub, out)
	}
	if err != nil {
		return fmt.Errorf("%s: hook %s %s %s %s: %w: %s", h.name, vm.name, op, sub, extra, err, errOut)
	}
	return nil
}

func (h *host) must(vm *vm, op, sub, extra string) {
	h.t.Helper()
	if err := h.call(vm, op, sub, extra); err != nil {
		h.t.Fatal(err)
	}
}

// start is what libvirtd does on this host to start vm (or to receive
// it): hooks, and in cooperative mode its own labelling of every image.
func (h *host) start(vm *vm, incoming bool) {
	h.t.Helper()
	if incoming {
		h.must(vm, "migrate", "begin", "-")
	}
	h.must(vm, "prepare", "begin", "-")
	if h.mode.cooperative {
		for _, f := range vm.files() {
			chown(h.t, f, qemu)
		}
	}
	h.must(vm, "start", "begin", "-")
	h.must(vm, "started", "begin", "-")
}

// stop is what libvirtd does when vm ends here: normally, after an
// outgoing migration, or after a failed incoming one. In cooperative mode
// libvirt's own restore gives the top image to root:root (it remembers no
// owner, as on NFS) on a normal stop; after a migration either way it
// leaves labels alone only on storage it knows is shared (libvirt 9 does
// not read shared_filesystems, so it restores on the NFS stand-in too,
// under the other host's QEMU).
func (h *host) stop(vm *vm, reason string) {
	h.t.Helper()
	migration := vm.migratedAway || reason == "failed"
	if h.mode.cooperative && (!migration || !h.libvirtSeesShared) {
		chown(h.t, vm.disk, rootOwn)
	}
	h.must(vm, "stopped", "end", reason)
	h.must(vm, "release", "end", reason)
}

func (h *host) status() string {
	h.t.Helper()
	out, errOut, err := h.run("", "status")
	if err != nil {
		h.t.Fatalf("%s: status: %v: %s", h.name, err, errOut)
	}
	return out
}

func chown(t *testing.T, p string, o owner) {
	t.Helper()
	if err := os.Chown(p, int(o[0]), int(o[1])); err != nil {
		t.Fatal(err)
	}
}

// vm is a domain with one qcow2 overlay on a shared base.
type vm struct {
	name, disk, base string
	// migratedAway tells stop that libvirt is ending the source of a
	// migration, whose labels it leaves alone.
	migratedAway bool
}

func (v *vm) files() []string { return []string{v.disk, v.base} }

func (v *vm) xml() string {
	return `<domain type='kvm'>
  <name>` + v.name + `</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='` + v.disk + `'/><target dev='vda' bus='virtio'/></disk>
  </devices>
</domain>
`
}

// images makes, in a root-owned 0755 directory on the mount, a base
// image owned by baseUID and one overlay per domain owned by diskUID: the
// issue's shared template.
func images(t *testing.T, dir string, names ...string) []*vm {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.qcow2")
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "16M")
	chown(t, base, baseOrig)
	must(t, os.Chmod(base, 0o600))
	var vms []*vm
	for _, n := range names {
		disk := filepath.Join(dir, n+".qcow2")
		sh(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", disk)
		chown(t, disk, diskOrig)
		must(t, os.Chmod(disk, 0o600))
		vms = append(vms, &vm{name: n, disk: disk, base: base})
	}
	return vms
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ownerOf(t *testing.T, p string) owner {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return owner{st.Uid, st.Gid}
}

// want checks owners after a step; the step names where it failed.
func want(t *testing.T, step string, owners map[string]owner) {
	t.Helper()
	for p, o := range owners {
		if got := ownerOf(t, p); got != o {
			t.Errorf("after %s: %s is %s, want %s", step, filepath.Base(p), got, o)
		}
	}
}

// migrate moves v from src to dst as libvirt does: the destination's
// hooks while the source still runs it, then the source's stop and
// release with reason (libvirt < 10.5 passes "-", later "migrated").
func migrate(t *testing.T, v *vm, src, dst *host, reason string) {
	t.Helper()
	// The source's QEMU has its disk open for writing all along.
	qemuFd, err := os.OpenFile(v.disk, os.O_RDWR, 0)
	must(t, err)
	defer qemuFd.Close()
	dst.start(v, true)
	want(t, v.name+" "+src.name+"->"+dst.name+": destination started", map[string]owner{v.disk: qemu, v.base: qemu})
	v.migratedAway = true
	src.stop(v, reason)
	v.migratedAway = false
	want(t, v.name+" "+src.name+"->"+dst.name+": source released", map[string]owner{v.disk: qemu, v.base: qemu})
}

// noRecordsLeft checks that the mount's record directory holds no record.
func noRecordsLeft(t *testing.T, m testenv.SharedMount) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(m.Dir, ".libvirt-dac-hook"))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatalf("record directory: %v", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			t.Errorf("record %s left after every domain stopped", e.Name())
		}
	}
}

type scenario struct {
	name string
	run  func(t *testing.T, m testenv.SharedMount, a, b *host, dir string)
}

var scenarios = []scenario{
	{"MigrateAndBack", func(t *testing.T, m testenv.SharedMount, a, b *host, dir string) {
		v := images(t, dir, "vm")[0]
		a.start(v, false)
		want(t, "start on A", map[string]owner{v.disk: qemu, v.base: qemu})
		migrate(t, v, a, b, "-")
		b.stop(v, "-")
		want(t, "stop on B", map[string]owner{v.disk: diskOrig, v.base: baseOrig})
	}},
	{"MigrateReasonMigrated", func(t *testing.T, m testenv.SharedMount, a, b *host, dir string) {
		v := images(t, dir, "vm")[0]
		a.start(v, false)
		migrate(t, v, a, b, "migrated")
		b.stop(v, "shutdown")
		want(t, "stop on B", map[string]owner{v.disk: diskOrig, v.base: baseOrig})
	}},
	{"FailedMigration", func(t *testing.T, m testenv.SharedMount, a, b *host, dir string) {
		v := images(t, dir, "vm")[0]
		a.start(v, false)
		b.start(v, true)
		b.stop(v, "failed")
		want(t, "failed migration", map[string]owner{v.disk: qemu, v.base: qemu})
		a.stop(v, "-")
		want(t, "stop on A", map[string]owner{v.disk: diskOrig, v.base: baseOrig})
	}},
	{"PingPong", func(t *testing.T, m testenv.SharedMount, a, b *host, dir string) {
		v := images(t, dir, "vm")[0]
		a.start(v, false)
		migrate(t, v, a, b, "-")
		migrate(t, v, b, a, "-")
		migrate(t, v, a, b, "-")
		b.stop(v, "-")
		want(t, "stop on B", map[string]owner{v.disk: diskOrig, v.base: baseOrig})
	}},
	{"SharedBaseOnTwoHosts", func(t *testing.T, m testenv.SharedMount, a, b *host, dir string) {
		vs := images(t, dir, "va", "vb")
		a.start(vs[0], false)
		b.start(vs[1], false)
		want(t, "both started", map[string]owner{vs[0].disk: qemu, vs[1].disk: qemu, vs[0].base: qemu})
		a.stop(vs[0], "-")
		want(t, "va stopped on A", map[string]owner{vs[0].disk: diskOrig, vs[1].disk: qemu, vs[0].base: qemu})
		b.stop(vs[1], "-")
		want(t, "vb stopped on B", map[string]owner{vs[0].disk: diskOrig, vs[1].disk: diskOrig, vs[0].base: baseOrig})
	}},
	{"HostDies", func(t *testing.T, m testenv.SharedMount, a, b *host, dir string) {
		v := images(t, dir, "vm")[0]
		a.start(v, false)
		migrate(t, v, a, b, "-")
		// B dies: no release ever comes from it.
		st := a.status()
		t.Logf("status on A:\n%s", st)
		if !strings.Contains(st, "B/vm") {
			t.Errorf("status on A does not show B holding the files:\n%s", st)
		}
		if _, errOut, err := a.run("", "restore", "--stale"); err != nil {
			t.Fatalf("restore --stale on A: %v: %s", err, errOut)
		}
		want(t, "restore --stale on the survivor", map[string]owner{v.disk: qemu, v.base: qemu})
		out, errOut, err := a.run("", "reclaim", "--dry-run", "--json", dir)
		if err != nil {
			t.Fatalf("reclaim --dry-run: %v: %s", err, errOut)
		}
		if strings.Contains(out, `"give back"`) {
			t.Errorf("reclaim --dry-run proposes giving back files B's QEMU holds:\n%s", out)
		}
		if _, errOut, err := a.run("", "forget-host", "B"); err != nil {
			t.Fatalf("forget-host B: %v: %s", err, errOut)
		}
		want(t, "forget-host B", map[string]owner{v.disk: diskOrig, v.base: baseOrig})
	}},
}

// concurrentScenario starts six domains on one base at once, three on each
// host, then stops them all at once: every prepare and release of both
// hosts races for the base's record.
var concurrentScenario = scenario{"SixDomainsOneBaseTwoHosts", func(t *testing.T, m testenv.SharedMount, a, b *host, dir string) {
	vs := images(t, dir, "v1", "v2", "v3", "v4", "v5", "v6")
	hostOf := func(i int) *host {
		if i%2 == 0 {
			return a
		}
		return b
	}
	all := func(do func(h *host, v *vm) error) {
		errs := make(chan error, len(vs))
		for i, v := range vs {
			go func() { errs <- do(hostOf(i), v) }()
		}
		for range vs {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	all(func(h *host, v *vm) error { return h.call(v, "prepare", "begin", "-") })
	running := map[string]owner{vs[0].base: qemu}
	for _, v := range vs {
		running[v.disk] = qemu
	}
	want(t, "six prepares at once", running)
	all(func(h *host, v *vm) error {
		if h.mode.cooperative {
			if err := os.Chown(v.disk, 0, 0); err != nil { // libvirt's restore
				return err
			}
		}
		return h.call(v, "release", "end", "-")
	})
	done := map[string]owner{vs[0].base: baseOrig}
	for _, v := range vs {
		done[v.disk] = diskOrig
	}
	want(t, "six releases at once", done)
}}

// TestMigration runs every scenario on every shared filesystem, in both
// modes.
func TestMigration(t *testing.T) {
	testenv.Need(t, "qemu-img")
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	mounts := []testenv.SharedMount{testenv.Bindfs(t, root, "nfs")}
	if _, err := exec.LookPath("glusterd"); err == nil || os.Getenv("CI") == "true" {
		mounts = append(mounts, testenv.Gluster(t, root))
	} else {
		t.Log("glusterd not installed: GlusterFS skipped")
	}
	for _, m := range mounts {
		for _, md := range modes {
			for _, sc := range append(scenarios, concurrentScenario) {
				t.Run(m.Name+"/"+md.name+"/"+sc.name, func(t *testing.T) {
					hroot := t.TempDir()
					var shared []string
					if m.Declare {
						shared = []string{m.Dir}
					}
					a := newHost(t, hroot, "A", md, shared)
					b := newHost(t, hroot, "B", md, shared)
					dir := filepath.Join(m.Dir, strings.NewReplacer("/", "-").Replace(t.Name()))
					t.Cleanup(func() {
						if t.Failed() {
							for _, h := range []*host{a, b} {
								if log, err := os.ReadFile(h.log); err == nil {
									t.Logf("%s's hook log:\n%s", h.name, log)
								}
							}
						}
						_ = os.RemoveAll(dir)
					})
					sc.run(t, m, a, b, dir)
					noRecordsLeft(t, m)
				})
			}
		}
	}
}

// TestRootSquash: on an export that squashes root, prepare fails with one
// line naming the fix, and nothing is changed or recorded.
func TestRootSquash(t *testing.T) {
	testenv.Need(t, "qemu-img")
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	// root's new files belong to nobody, root's chowns are refused. The
	// images are made behind its back, naming each other by the
	// squashed mount's paths.
	sq := testenv.Bindfs(t, root, "squashed", "--create-for-user=65534", "--create-for-group=65534", "--chown-deny")
	back := filepath.Join(root, "squashed-back", "img")
	must(t, os.MkdirAll(back, 0o755))
	sv := &vm{name: "vm", disk: filepath.Join(sq.Dir, "img", "vm.qcow2"), base: filepath.Join(sq.Dir, "img", "base.qcow2")}
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(back, "base.qcow2"), "16M")
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", sv.base, "-F", "qcow2", "-o", "size=16M", filepath.Join(back, "vm.qcow2"))
	chown(t, filepath.Join(back, "base.qcow2"), baseOrig)
	chown(t, filepath.Join(back, "vm.qcow2"), diskOrig)
	v := &vm{disk: filepath.Join(back, "vm.qcow2"), base: filepath.Join(back, "base.qcow2")}
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			a := newHost(t, t.TempDir(), "A", md, []string{sq.Dir})
			err := a.call(sv, "prepare", "begin", "-")
			if err == nil || !strings.Contains(err.Error(), "no_root_squash") || strings.Count(strings.TrimSpace(err.Error()), "\n") > 0 {
				t.Fatalf("prepare on a root-squashed export = %v, want one line naming no_root_squash", err)
			}
			t.Log(err)
			want(t, "refused prepare", map[string]owner{v.disk: diskOrig, v.base: baseOrig})
			if _, err := os.Stat(filepath.Join(sq.Dir, ".libvirt-dac-hook")); err == nil {
				t.Errorf("a record directory was left on the squashed export")
			}
			var st struct {
				Entries []json.RawMessage `json:"entries"`
			}
			out, _, err := a.run("", "status", "--json")
			must(t, err)
			must(t, json.Unmarshal([]byte(out), &st))
			if len(st.Entries) != 0 {
				t.Errorf("the refused prepare left %d journal entries", len(st.Entries))
			}
		})
	}
}

// TestReadOnlyShared: an image QEMU already owns on a read-only shared
// mount (ISOs on a read-only export) starts and stops: nothing can change
// owner there, so nothing is recorded and no record directory is made.
func TestReadOnlyShared(t *testing.T) {
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	back := filepath.Join(root, "ro-back")
	must(t, os.MkdirAll(back, 0o755))
	write(t, filepath.Join(back, "boot.iso"), "iso")
	chown(t, filepath.Join(back, "boot.iso"), qemu)
	m := testenv.Bindfs(t, root, "ro", "-r")
	iso := filepath.Join(m.Dir, "boot.iso")
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			a := newHost(t, t.TempDir(), "A", md, []string{m.Dir})
			v := &cdromVM{name: "cd", iso: iso}
			for _, op := range [][3]string{{"prepare", "begin", "-"}, {"release", "end", "-"}} {
				out, errOut, err := a.run(v.xml(), v.name, op[0], op[1], op[2])
				if err != nil || out != "" {
					t.Fatalf("hook %s: %v, stdout %q: %s", op[0], err, out, errOut)
				}
			}
			want(t, "start and stop", map[string]owner{iso: qemu})
			if _, err := os.Stat(filepath.Join(m.Dir, ".libvirt-dac-hook")); err == nil {
				t.Errorf("a record directory appeared on a read-only mount")
			}
		})
	}
}

type cdromVM struct{ name, iso string }

func (v *cdromVM) xml() string {
	return `<domain type='kvm'>
  <name>` + v.name + `</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='` + v.iso + `'/><target dev='sda' bus='sata'/><readonly/></disk>
  </devices>
</domain>
`
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
