package main

// End-to-end scenarios: a real libvirtd with dynamic_ownership = 0 starts
// real QEMU processes whose only way to open their disks is the ownership
// the hook gives them. Every file starts owned by users that are neither
// root nor QEMU, with modes that keep QEMU out, so a missed chown makes the
// VM fail to start rather than pass by accident. The harness is in
// e2e_harness_test.go.
//
// Backing files are owned by the same uid as the overlay naming them: by
// default the hook only follows a header to a file owned by root, the QEMU
// user or the overlay's owner (backing_any_owner); TestForeignBacking checks
// that refusal.

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// disk is one <disk> of testdata/e2e/domain.xml.tmpl.
type disk struct {
	Type      string // file or block
	Device    string // disk or cdrom
	Format    string // raw or qcow2
	Source    string
	Target    string
	Bus       string
	Cache     string
	ReadOnly  bool
	Shareable bool
	NoRelabel bool // <seclabel model='dac' relabel='no'/> inside <source>
}

type domainSpec struct {
	Name      string
	MemoryMiB int
	Seclabel  string // raw domain-level <seclabel> element, if any
	Disks     []disk
}

func fileDisk(format, path, target string) disk {
	return disk{Type: "file", Device: "disk", Format: format, Source: path, Target: target, Bus: "virtio"}
}

// tracked is a host file whose owner the scenario checks.
type tracked struct {
	path    string
	orig    owner       // before the VM starts and after it is gone
	mode    fs.FileMode // never changes
	running owner       // while the VM runs
}

// fixture is one scenario's directory of images and the files it checks.
type fixture struct {
	t     *testing.T
	h     *harness
	dir   string
	files []*tracked
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if e2e == nil {
		t.Skip("e2e harness not set up")
	}
	dir := filepath.Join(e2e.workDir, strings.Trim(nameSanitizer.ReplaceAllString(t.Name(), "-"), "-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create fixture dir: %v", err)
	}
	// Mkdir honours the umask; QEMU must be able to traverse.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod fixture dir: %v", err)
	}
	return &fixture{t: t, h: e2e, dir: dir}
}

// image creates an image with qemu-img and gives it owner o and mode.
// backing, when set, is recorded only in the image header: the domain XML
// never names it, so the hook has to read the chain itself.
func (f *fixture) image(name, format, size, backing string, o owner, mode fs.FileMode) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	args := []string{"create", "-q", "-f", format}
	if backing != "" {
		args = append(args, "-F", "qcow2", "-b", backing)
	}
	args = append(args, p)
	if size != "" {
		args = append(args, size)
	}
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		f.t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
	setOwner(f.t, p, o, mode)
	return p
}

func setOwner(t *testing.T, p string, o owner, mode fs.FileMode) {
	t.Helper()
	if err := os.Chown(p, o.uid, o.gid); err != nil {
		t.Fatalf("chown %s: %v", p, err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatalf("chmod %s: %v", p, err)
	}
}

// track adds p to the checked files, recording its current owner and mode
// as the original; running is the owner expected while the VM runs.
func (f *fixture) track(p string, running owner) *tracked {
	f.t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		f.t.Fatalf("stat %s: %v", p, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	tr := &tracked{path: p, orig: owner{int(st.Uid), int(st.Gid)}, mode: modeBits(fi), running: running}
	f.files = append(f.files, tr)
	return tr
}

func modeBits(fi fs.FileInfo) fs.FileMode {
	return fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// loop attaches a loop device to a fresh backing file and gives the device
// node owner o and mode; cleanup detaches it and puts the node back as the
// system had it.
func (f *fixture) loop(o owner, mode fs.FileMode) string {
	f.t.Helper()
	backing := filepath.Join(f.dir, "loop-backing.img")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", backing, "8M").CombinedOutput(); err != nil {
		f.t.Fatalf("qemu-img create %s: %v: %s", backing, err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", backing).CombinedOutput()
	if err != nil {
		f.t.Fatalf("losetup -f --show %s: %v: %s", backing, err, out)
	}
	dev := strings.TrimSpace(string(out))
	fi, err := os.Stat(dev)
	if err != nil {
		f.t.Fatalf("stat %s: %v", dev, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	lr := loopRecord{Dev: dev, UID: int(st.Uid), GID: int(st.Gid), Mode: modeBits(fi)}
	if err := f.h.record(func(r *runRecord) { r.Loops = append(r.Loops, lr) }); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		if err := detachLoops(runRecord{WorkDir: f.h.workDir, Loops: []loopRecord{lr}}); err != nil {
			f.t.Error(err)
		}
		_ = f.h.record(func(r *runRecord) {
			r.Loops = slices.DeleteFunc(r.Loops, func(l loopRecord) bool { return l == lr })
		})
	})
	setOwner(f.t, dev, o, mode)
	return dev
}

// start renders spec, runs `virsh create` and returns libvirt's output and
// error. A domain that did start is destroyed at cleanup if the test left it
// running.
func (f *fixture) start(spec domainSpec) (string, error) {
	f.t.Helper()
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 64
	}
	var buf bytes.Buffer
	if err := f.h.tmpl.Execute(&buf, spec); err != nil {
		f.t.Fatalf("render domain %s: %v", spec.Name, err)
	}
	xmlPath := filepath.Join(f.dir, spec.Name+".xml")
	if err := os.WriteFile(xmlPath, buf.Bytes(), 0o644); err != nil {
		f.t.Fatalf("write %s: %v", xmlPath, err)
	}
	out, err := virsh(2*time.Minute, "create", xmlPath)
	if err == nil {
		f.t.Cleanup(func() { _, _ = virsh(time.Minute, "destroy", spec.Name) })
	}
	return out, err
}

// mustStart is start for scenarios where the VM has to come up.
func (f *fixture) mustStart(spec domainSpec) {
	f.t.Helper()
	out, err := f.start(spec)
	if err != nil {
		f.t.Errorf("virsh create %s: %v (libvirt's error below)", spec.Name, err)
		logBlock(f.t, "libvirt error", out)
		f.h.diagnose(f.t, spec.Name)
		f.t.FailNow()
	}
}

func (f *fixture) destroy(name string) {
	f.t.Helper()
	if out, err := virsh(time.Minute, "destroy", name); err != nil {
		f.t.Errorf("virsh destroy %s: %v: %s", name, err, out)
	}
	f.waitGone(name)
}

// waitGone waits until libvirt no longer lists the transient domain; the
// release hook has run by then.
func (f *fixture) waitGone(name string) {
	f.t.Helper()
	var out string
	if !waitFor(30*time.Second, func() bool {
		var err error
		out, err = virsh(10*time.Second, "domstate", name)
		return err != nil || out == "shut off"
	}) {
		f.t.Fatalf("domain %s still %q after 30s", name, out)
	}
}

// check compares every tracked file with the owner expected in this phase
// and with its original mode; on any mismatch it prints the hook's log.
func (f *fixture) check(phase string, running bool, domains ...string) {
	f.t.Helper()
	ok := true
	for _, tr := range f.files {
		want := tr.orig
		if running {
			want = tr.running
		}
		if !f.checkOne(phase, tr, want) {
			ok = false
		}
	}
	if !ok {
		f.h.diagnose(f.t, domains...)
	}
}

func (f *fixture) checkOne(phase string, tr *tracked, want owner) bool {
	f.t.Helper()
	fi, err := os.Stat(tr.path)
	if err != nil {
		f.t.Errorf("%s: stat %s: %v", phase, tr.path, err)
		return false
	}
	st := fi.Sys().(*syscall.Stat_t)
	ok := true
	if got := (owner{int(st.Uid), int(st.Gid)}); got != want {
		f.t.Errorf("%s: owner of %s = %s, want %s (original %s)", phase, tr.path, got, want, tr.orig)
		ok = false
	}
	if got := modeBits(fi); got != tr.mode {
		f.t.Errorf("%s: mode of %s = %v, want %v", phase, tr.path, got, tr.mode)
		ok = false
	}
	return ok
}

// qemuPID reads the pid libvirt recorded for a running domain.
func qemuPID(t *testing.T, name string) int {
	t.Helper()
	data, err := os.ReadFile("/run/libvirt/qemu/" + name + ".pid")
	if err != nil {
		t.Fatalf("read qemu pid of %s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("parse qemu pid of %s: %v", name, err)
	}
	return pid
}

// processOwner returns the real uid and gid of pid.
func processOwner(t *testing.T, pid int) owner {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of pid %d: %v", pid, err)
	}
	var o owner
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Uid:":
			o.uid, _ = strconv.Atoi(f[1])
		case "Gid:":
			o.gid, _ = strconv.Atoi(f[1])
		}
	}
	return o
}

func (f *fixture) checkQEMURunsAs(name string, want owner) {
	f.t.Helper()
	if got := processOwner(f.t, qemuPID(f.t, name)); got != want {
		f.t.Errorf("qemu of %s runs as %s, want %s", name, got, want)
	}
}

// TestDiskKinds: every kind of disk source the hook handles in one VM.
func TestDiskKinds(t *testing.T) {
	f := newFixture(t)
	h := f.h
	q := h.qemu.owner()
	alice, bob := h.alice.owner(), h.bob.owner()

	base := f.image("base.qcow2", "qcow2", "16M", "", alice, 0o400)
	over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", owner{alice.uid, bob.gid}, 0o600)
	iso := f.image("cdrom.iso", "raw", "1M", "", bob, 0o400)
	shared := f.image("shared.raw", "raw", "8M", "", owner{bob.uid, alice.gid}, 0o660)
	dev := f.loop(alice, 0o600)
	for _, p := range []string{base, over, raw, iso, shared, dev} {
		f.track(p, q)
	}

	name := domainPrefix + "kinds"
	cdrom := disk{Type: "file", Device: "cdrom", Format: "raw", Source: iso, Target: "hdc", Bus: "ide", ReadOnly: true}
	sh := fileDisk("raw", shared, "vdc")
	sh.Shareable, sh.Cache = true, "none"
	f.mustStart(domainSpec{Name: name, Disks: []disk{
		fileDisk("qcow2", over, "vda"),
		fileDisk("raw", raw, "vdb"),
		sh,
		{Type: "block", Device: "disk", Format: "raw", Source: dev, Target: "vdd", Bus: "virtio"},
		cdrom,
	}})
	f.checkQEMURunsAs(name, q)
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}

// TestKill9: QEMU dies without libvirt asking; libvirt still calls release.
func TestKill9(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", owner{alice.uid, bob.gid}, 0o440)
	over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", alice, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, q)
	}
	name := domainPrefix + "kill9"
	f.mustStart(domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}})
	f.check("running", true, name)
	pid := qemuPID(t, name)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	f.waitGone(name)
	f.check("after kill -9", false, name)
}

// TestLibvirtdRestart: the VM outlives a libvirtd restart; release comes
// from the new daemon, which never saw prepare.
func TestLibvirtdRestart(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", owner{alice.uid, bob.gid}, 0o400)
	over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", bob, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, q)
	}
	name := domainPrefix + "restart"
	f.mustStart(domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}})
	f.check("running", true, name)

	pid, ok := daemonPID(libvirtdPID)
	if !ok {
		t.Fatalf("libvirtd is not running (no live pid in %s)", libvirtdPID)
	}
	if err := stopDaemon("libvirtd", pid); err != nil {
		t.Fatal(err)
	}
	if err := startLibvirtd(); err != nil {
		t.Fatal(err)
	}
	if out, err := virsh(10*time.Second, "domstate", name); err != nil || out != "running" {
		t.Fatalf("after libvirtd restart, domstate %s = %q, %v; want running", name, out, err)
	}
	f.check("running after libvirtd restart", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}

// TestStaticSeclabel: a static DAC label makes QEMU run as that user, so
// the files belong to it (not to qemu.conf's user) while the VM runs.
func TestStaticSeclabel(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", bob, 0o400)
	over := f.image("overlay.qcow2", "qcow2", "", base, bob, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", bob, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, alice)
	}
	name := domainPrefix + "static"
	label := fmt.Sprintf("<seclabel type='static' model='dac' relabel='yes'><label>+%d:+%d</label></seclabel>", alice.uid, alice.gid)
	spec := domainSpec{Name: name, Seclabel: label, Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}}
	if out, err := f.start(spec); err != nil {
		// libvirt chowns the domain's private files (master-key.aes) to
		// the label user even with dynamic_ownership = 0, but the user
		// must also traverse /var/lib/libvirt/qemu (0750, QEMU's user and
		// group), which nobody grants it.
		if strings.Contains(out, "/var/lib/libvirt/qemu/") && strings.Contains(out, "Permission denied") {
			t.Logf("hint: the label user %s cannot reach libvirt's per-domain directory under /var/lib/libvirt/qemu; the hook has to grant traversal (e.g. an ACL) for static labels", aliceName)
		}
		t.Errorf("virsh create %s: %v", name, err)
		logBlock(t, "libvirt error", out)
		f.h.diagnose(t, name)
		t.FailNow()
	}
	f.checkQEMURunsAs(name, alice)
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}

// TestDomainNoRelabel: with relabelling off for the whole domain the hook
// must change nothing. The files are world-readable and -writable so QEMU
// can use them without help, and owned by someone else than QEMU so any
// chown (even one undone later) is visible while the VM runs.
func TestDomainNoRelabel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		seclabel func(q owner) string
	}{
		{"type-none", func(owner) string { return "<seclabel type='none' model='dac'/>" }},
		{"static-relabel-no", func(q owner) string {
			return fmt.Sprintf("<seclabel type='static' model='dac' relabel='no'><label>+%d:+%d</label></seclabel>", q.uid, q.gid)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			q := f.h.qemu.owner()
			alice, bob := f.h.alice.owner(), f.h.bob.owner()
			base := f.image("base.qcow2", "qcow2", "16M", "", owner{alice.uid, bob.gid}, 0o444)
			over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o666)
			raw := f.image("data.raw", "raw", "8M", "", owner{alice.uid, bob.gid}, 0o666)
			for _, p := range []string{base, over, raw} {
				tr := f.track(p, owner{})
				tr.running = tr.orig
			}
			name := domainPrefix + "norelabel-" + tc.name
			f.mustStart(domainSpec{Name: name, Seclabel: tc.seclabel(q), Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}})
			f.checkQEMURunsAs(name, q)
			f.check("running", true, name)
			f.destroy(name)
			f.check("after destroy", false, name)
		})
	}
}

// TestDiskNoRelabel: <seclabel relabel='no'/> on one disk's source leaves
// that file alone while the other disk is handled as usual.
func TestDiskNoRelabel(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	keep := f.image("keep.raw", "raw", "8M", "", owner{alice.uid, bob.gid}, 0o666)
	handled := f.image("handled.raw", "raw", "8M", "", bob, 0o600)
	tr := f.track(keep, owner{})
	tr.running = tr.orig
	f.track(handled, q)
	name := domainPrefix + "disk-norelabel"
	d := fileDisk("raw", keep, "vda")
	d.NoRelabel = true
	f.mustStart(domainSpec{Name: name, Disks: []disk{d, fileDisk("raw", handled, "vdb")}})
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}

// TestMissingDisk: prepare cannot succeed, so it must undo what it did for
// the other disks, and libvirt's error must name the missing path.
func TestMissingDisk(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", owner{alice.uid, bob.gid}, 0o400)
	over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", bob, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, owner{})
	}
	missing := filepath.Join(f.dir, "does-not-exist.raw")
	name := domainPrefix + "missing"
	out, err := f.start(domainSpec{Name: name, Disks: []disk{
		fileDisk("qcow2", over, "vda"),
		fileDisk("raw", raw, "vdb"),
		fileDisk("raw", missing, "vdc"),
	}})
	if err == nil {
		t.Errorf("virsh create with missing disk %s succeeded, want failure", missing)
		f.destroy(name)
	} else if !strings.Contains(out, missing) {
		t.Errorf("libvirt's error does not name the missing disk %s", missing)
		logBlock(t, "libvirt error", out)
	} else {
		logBlock(t, "libvirt error (as expected)", out)
	}
	if out, err := virsh(10*time.Second, "domstate", name); err == nil {
		t.Errorf("domain %s still exists after failed create: %s", name, out)
	}
	if _, err := os.Lstat(missing); err == nil {
		t.Errorf("%s exists after the failed start; nothing should create it", missing)
	}
	f.check("after failed create", false, name)
}

// TestForeignBacking: an overlay whose header names a base owned by
// someone else is refused (a guest that could rewrite the header must not
// get other users' files), nothing is chowned, and libvirt says why.
func TestForeignBacking(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("bobs-base.qcow2", "qcow2", "16M", "", bob, 0o400)
	over := f.image("overlay.qcow2", "qcow2", "", base, alice, 0o600)
	raw := f.image("data.raw", "raw", "8M", "", alice, 0o600)
	for _, p := range []string{base, over, raw} {
		f.track(p, owner{})
	}
	name := domainPrefix + "foreign-backing"
	out, err := f.start(domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", over, "vda"), fileDisk("raw", raw, "vdb")}})
	if err == nil {
		t.Errorf("virsh create with a backing file owned by %s under an overlay owned by %s succeeded, want refusal", bobName, aliceName)
		f.check("running (should not be)", false, name)
		f.destroy(name)
	} else if !strings.Contains(out, base) {
		t.Errorf("libvirt's error does not name the refused backing file %s", base)
		logBlock(t, "libvirt error", out)
	} else {
		logBlock(t, "libvirt error (as expected)", out)
	}
	f.check("after refused create", false, name)
}

// TestConcurrent: several VMs share one read-only base image; the base
// stays QEMU's while any of them runs and goes back only after the last.
func TestConcurrent(t *testing.T) {
	const n = 6
	f := newFixture(t)
	q := f.h.qemu.owner()
	alice, bob := f.h.alice.owner(), f.h.bob.owner()
	base := f.image("base.qcow2", "qcow2", "16M", "", owner{alice.uid, bob.gid}, 0o440)
	baseT := f.track(base, q)
	var names []string
	var overlays []*tracked
	for i := range n {
		o := alice
		if i%2 == 1 {
			o = owner{alice.uid, bob.gid}
		}
		p := f.image(fmt.Sprintf("vm%d.qcow2", i), "qcow2", "", base, o, 0o600)
		overlays = append(overlays, f.track(p, q))
		names = append(names, fmt.Sprintf("%sconc-%d", domainPrefix, i))
	}

	parallel := func(idx []int, do func(i int)) {
		var wg sync.WaitGroup
		for _, i := range idx {
			wg.Add(1)
			go func() {
				defer wg.Done()
				do(i)
			}()
		}
		wg.Wait()
	}
	var mu sync.Mutex
	var failed []string
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	parallel(all, func(i int) {
		out, err := f.start(domainSpec{Name: names[i], Disks: []disk{fileDisk("qcow2", overlays[i].path, "vda")}})
		if err != nil {
			mu.Lock()
			failed = append(failed, fmt.Sprintf("%s: %v: %s", names[i], err, out))
			mu.Unlock()
		}
	})
	if len(failed) > 0 {
		for _, s := range failed {
			t.Errorf("virsh create: %s", s)
		}
		f.h.diagnose(t, names...)
		t.FailNow()
	}
	f.check("all running", true, names...)

	destroy := func(idx []int) {
		parallel(idx, func(i int) {
			if out, err := virsh(time.Minute, "destroy", names[i]); err != nil {
				t.Errorf("virsh destroy %s: %v: %s", names[i], err, out)
			}
		})
		for _, i := range idx {
			f.waitGone(names[i])
		}
	}
	destroy(all[:n/2])
	// Half gone: the base is still in use by the others.
	ok := f.checkOne("half destroyed", baseT, q)
	for i, tr := range overlays {
		want := q
		if i < n/2 {
			want = tr.orig
		}
		ok = f.checkOne("half destroyed", tr, want) && ok
	}
	if !ok {
		f.h.diagnose(t, names...)
	}
	destroy(all[n/2:])
	f.check("all destroyed", false, names...)
}
