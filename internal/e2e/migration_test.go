//go:build e2e

package e2e

// Live migration between two libvirt hosts on shared storage: two more
// namespaced hosts (each its own libvirtd, host_uuid, hook state directory
// and host id) started after the shared filesystems are mounted, so both
// see them at the same path. virsh moves a running TCG domain between them
// over loopback. The storage: a single-brick GlusterFS volume (FUSE), and
// an xattr-less FUSE mount standing for NFS, declared shared in qemu.conf's
// shared_filesystems (libvirt 9 does not read it, so virsh migrate gets
// --unsafe: libvirt's own check does not know the mount is shared). Owners
// are checked with stat through both hosts' views after every step.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/testenv"
)

// The accounts of the images: a shared base of one, overlays of another,
// in a root-owned 0755 directory (the shared template).
var (
	migBase = owner{1201, 2201}
	migDisk = owner{1202, 2202}
)

// migHosts are the two hosts of one filesystem and mode.
type migHosts struct {
	t    *testing.T
	a, b *host
	dir  string // the scenario's image directory on the shared mount
}

func TestMigration(t *testing.T) {
	if e2e == nil {
		t.Skip("e2e harness not set up")
	}
	testenv.Need(t, "bindfs")
	root := filepath.Join(e2e.workDir, "migration")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mounts := []testenv.SharedMount{testenv.Bindfs(t, root, "nfs")}
	if _, err := exec.LookPath("glusterd"); err == nil || os.Getenv("CI") == "true" {
		mounts = append(mounts, testenv.Gluster(t, root))
	} else {
		t.Log("glusterd not installed: GlusterFS left out")
	}
	for _, m := range mounts {
		for _, mode := range []ownershipMode{strictMode, coopNoRemember} {
			t.Run(m.Name+"/"+mode.name, func(t *testing.T) {
				hs := startMigHosts(t, m, mode)
				for _, sc := range migScenarios {
					t.Run(sc.name, func(t *testing.T) {
						hs.t = t
						hs.dir = filepath.Join(m.Dir, strings.Trim(nameSanitizer.ReplaceAllString(t.Name(), "-"), "-"))
						if err := os.Mkdir(hs.dir, 0o755); err != nil {
							t.Fatal(err)
						}
						if err := os.Chmod(hs.dir, 0o755); err != nil {
							t.Fatal(err)
						}
						sc.run(hs)
					})
					if sc.killsB && !t.Failed() {
						// The scenario killed host B: a fresh one for the rest.
						hs.b = startMigHost(t, "b", m, mode, 49210)
					}
				}
			})
		}
	}
}

// startMigHosts starts hosts A and B for mount m in mode.
func startMigHosts(t *testing.T, m testenv.SharedMount, mode ownershipMode) *migHosts {
	t.Helper()
	return &migHosts{t: t, a: startMigHost(t, "a", m, mode, 49200), b: startMigHost(t, "b", m, mode, 49210)}
}

// migHostN numbers the hosts of the run: each has a directory of its own.
var migHostN int

// startMigHost starts host role ("a" or "b") for mount m in mode, its
// incoming migrations on ports port..port+9; the host is stopped when the
// test ends.
func startMigHost(t *testing.T, role string, m testenv.SharedMount, mode ownershipMode, port int) *host {
	t.Helper()
	migHostN++
	name := fmt.Sprintf("mig%d-%s", migHostN, role)
	extra := fmt.Sprintf("migration_port_min = %d\nmigration_port_max = %d\n", port, port+9)
	if m.Declare {
		extra += fmt.Sprintf("shared_filesystems = [ %q ]\n", m.Dir)
	}
	hs, err := e2e.startHost(name, mode, extra)
	if err != nil {
		t.Fatalf("start host %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := hs.stop(); err != nil {
			t.Errorf("stop host %s: %v", name, err)
		}
	})
	return hs
}

// migVM is a domain with one qcow2 overlay on the scenario's base.
type migVM struct {
	name, disk, base, xml string
}

// images makes the base (migBase) and one overlay (migDisk) per name.
func (hs *migHosts) images(names ...string) []*migVM {
	t := hs.t
	t.Helper()
	base := filepath.Join(hs.dir, "base.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "16M")
	setOwner(t, base, migBase, 0o600)
	var vms []*migVM
	for _, n := range names {
		overlay := filepath.Join(hs.dir, n+".qcow2")
		qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay)
		setOwner(t, overlay, migDisk, 0o600)
		v := &migVM{name: domainPrefix + "mig-" + n, disk: overlay, base: base}
		spec := domainSpec{Name: v.name, Disks: []disk{fileDisk("qcow2", overlay, "vda")}}
		v.xml = filepath.Join(hs.dir, n+".xml")
		if err := os.WriteFile(v.xml, []byte(spec.xml()), 0o644); err != nil {
			t.Fatal(err)
		}
		vms = append(vms, v)
	}
	return vms
}

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// want checks the owners of the files as both hosts see them.
func (hs *migHosts) want(step string, owners map[string]owner) {
	t := hs.t
	t.Helper()
	ok := true
	for p, o := range owners {
		for _, h := range []*host{hs.a, hs.b} {
			if h.keeper == nil {
				continue // a host that died
			}
			var st syscall.Stat_t
			if err := syscall.Stat(h.path(p), &st); err != nil {
				t.Fatalf("after %s: stat %s on host %s: %v", step, p, h.name, err)
			}
			if got := (owner{int(st.Uid), int(st.Gid)}); got != o {
				t.Errorf("after %s: %s on host %s is %s, want %s", step, filepath.Base(p), h.name, got, o)
				ok = false
			}
		}
	}
	if !ok {
		hs.a.diagnose(t)
		if hs.b.keeper != nil {
			hs.b.diagnose(t)
		}
	}
}

func (hs *migHosts) start(h *host, v *migVM) {
	hs.t.Helper()
	if out, err := h.virsh(2*time.Minute, "create", v.xml); err != nil {
		h.diagnose(hs.t, v.name)
		hs.t.Fatalf("virsh create %s on %s: %v: %s", v.name, h.name, err, out)
	}
}

func (hs *migHosts) destroy(h *host, v *migVM) {
	hs.t.Helper()
	if out, err := h.virsh(time.Minute, "destroy", v.name); err != nil {
		hs.t.Fatalf("virsh destroy %s on %s: %v: %s", v.name, h.name, err, out)
	}
	hs.waitGone(h, v)
}

// waitGone waits until h lists v no more: its release hook has run.
func (hs *migHosts) waitGone(h *host, v *migVM) {
	hs.t.Helper()
	if !waitFor(30*time.Second, func() bool {
		_, err := h.virsh(10*time.Second, "domstate", v.name)
		return err != nil
	}) {
		hs.t.Fatalf("%s still on host %s after 30s", v.name, h.name)
	}
}

func (hs *migHosts) running(h *host, v *migVM) bool {
	out, err := h.virsh(10*time.Second, "domstate", v.name)
	return err == nil && out == "running"
}

// migrate moves v live from src to dst, as an admin does.
func (hs *migHosts) migrate(v *migVM, src, dst *host, extra ...string) (string, error) {
	args := append([]string{"-q", "-c", src.uri(), "migrate", "--live", "--unsafe"}, extra...)
	args = append(args, v.name, dst.uri())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (hs *migHosts) mustMigrate(v *migVM, src, dst *host) {
	hs.t.Helper()
	if out, err := hs.migrate(v, src, dst, "--migrateuri", "tcp://127.0.0.1"); err != nil {
		src.diagnose(hs.t, v.name)
		dst.diagnose(hs.t, v.name)
		hs.t.Fatalf("virsh migrate %s %s -> %s: %v: %s", v.name, src.name, dst.name, err, out)
	}
	hs.waitGone(src, v)
	if !hs.running(dst, v) {
		hs.t.Fatalf("%s is not running on %s after the migration", v.name, dst.name)
	}
	hs.want(v.name+" "+src.name+" -> "+dst.name, map[string]owner{v.disk: e2e.qemu.owner(), v.base: e2e.qemu.owner()})
}

// hostID is the id h's hook names itself by in the cluster records.
func hostID(t *testing.T, h *host) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.stateDir, "host-id"))
	if err != nil {
		t.Fatalf("host %s: read its host id: %v", h.name, err)
	}
	return strings.TrimSpace(string(b))
}

func hookOut(t *testing.T, h *host, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := h.hookCommand(ctx, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("host %s: %s %s: %v: %s", h.name, hookPath, strings.Join(args, " "), err, out)
	}
	return string(out)
}

type migScenario struct {
	name   string
	killsB bool
	run    func(hs *migHosts)
}

var migScenarios = []migScenario{
	{name: "PingPong", run: func(hs *migHosts) {
		v := hs.images("pp")[0]
		q := e2e.qemu.owner()
		hs.start(hs.a, v)
		hs.want("start on A", map[string]owner{v.disk: q, v.base: q})
		hs.mustMigrate(v, hs.a, hs.b)
		hs.mustMigrate(v, hs.b, hs.a)
		hs.mustMigrate(v, hs.a, hs.b)
		hs.destroy(hs.b, v)
		hs.want("stop on B", map[string]owner{v.disk: migDisk, v.base: migBase})
	}},
	{name: "FailedMigration", run: func(hs *migHosts) {
		v := hs.images("fail")[0]
		q := e2e.qemu.owner()
		hs.start(hs.a, v)
		// The destination's QEMU cannot listen on an address this
		// machine does not have: libvirt ends it ("stopped", "release
		// failed") and the source runs on.
		if out, err := hs.migrate(v, hs.a, hs.b, "--listen-address", "203.0.113.7", "--migrateuri", "tcp://203.0.113.7"); err == nil {
			hs.t.Fatalf("migration to an address nobody has succeeded: %s", out)
		}
		hs.waitGone(hs.b, v)
		if !hs.running(hs.a, v) {
			hs.t.Fatalf("%s does not run on A any more after the failed migration", v.name)
		}
		hs.want("failed migration", map[string]owner{v.disk: q, v.base: q})
		hs.destroy(hs.a, v)
		hs.want("stop on A", map[string]owner{v.disk: migDisk, v.base: migBase})
	}},
	{name: "SharedBaseOnTwoHosts", run: func(hs *migHosts) {
		vs := hs.images("va", "vb")
		q := e2e.qemu.owner()
		hs.start(hs.a, vs[0])
		hs.start(hs.b, vs[1])
		hs.want("both started", map[string]owner{vs[0].disk: q, vs[1].disk: q, vs[0].base: q})
		hs.destroy(hs.a, vs[0])
		hs.want("va stopped on A", map[string]owner{vs[0].disk: migDisk, vs[1].disk: q, vs[0].base: q})
		hs.destroy(hs.b, vs[1])
		hs.want("vb stopped on B", map[string]owner{vs[0].disk: migDisk, vs[1].disk: migDisk, vs[0].base: migBase})
	}},
	{name: "HostDies", killsB: true, run: func(hs *migHosts) {
		v := hs.images("dies")[0]
		q := e2e.qemu.owner()
		hs.start(hs.a, v)
		hs.mustMigrate(v, hs.a, hs.b)
		bID := hostID(hs.t, hs.b)
		qemu := hs.b.qemuPID(hs.t, v.name)
		// B dies: its libvirtd first, so no release hook ever runs.
		_ = hs.b.libvirtd.cmd.Process.Kill()
		<-hs.b.libvirtd.done
		_ = syscall.Kill(qemu, syscall.SIGKILL)
		_ = hs.b.stop()
		hs.want("B died", map[string]owner{v.disk: q, v.base: q})
		if st := hookOut(hs.t, hs.a, "status"); !strings.Contains(st, bID+"/"+v.name) {
			hs.t.Errorf("status on A does not show B (%s) holding the files:\n%s", bID, st)
		}
		hookOut(hs.t, hs.a, "restore", "--stale")
		hs.want("restore --stale on A", map[string]owner{v.disk: q, v.base: q})
		hookOut(hs.t, hs.a, "forget-host", bID)
		hs.want("forget-host B on A", map[string]owner{v.disk: migDisk, v.base: migBase})
	}},
}
