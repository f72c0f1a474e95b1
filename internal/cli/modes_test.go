package cli_test

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/watch"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

const transientDisk = `    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$ROOT/img/disk.raw'/><target dev='vda' bus='virtio'/><transient/></disk>`

// startWatcher runs the watcher in this process, as the init system
// would beside libvirtd; this test process plays libvirt's daemon (its
// pid is the daemon's pid file), so its own chowns are libvirt's labels.
func (f *fixture) startWatcher() {
	f.t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	store, err := journal.Open(f.state, 5*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	pidFile := f.path("libvirtd.pid")
	if err := os.WriteFile(pidFile, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		f.t.Fatal(err)
	}
	ready := make(chan struct{})
	w := &watch.Watcher{
		StateDir: f.state, Log: log, Known: apply.JournalKnows(store), BootID: store.BootID,
		Flush: 5 * time.Millisecond, DaemonPidFiles: []string{pidFile}, Ready: func() { close(ready) },
	}
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- w.Run(stop) }()
	f.t.Cleanup(func() {
		close(stop)
		if err := <-done; err != nil {
			f.t.Errorf("watcher: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		f.t.Fatalf("watcher: %v", err)
	}
}

// sync makes the handshake prepare makes for domain's record: the
// watcher has handled every event so far and written what it saw.
func (f *fixture) sync(domain string) {
	f.t.Helper()
	r, err := inventory.Load(f.state, domain)
	if err != nil || r == nil {
		f.t.Fatalf("record of %s: %v, %v", domain, r, err)
	}
	if err := watch.Sync(f.state, domain, r.Gen, 10*time.Second); err != nil {
		f.t.Fatalf("handshake: %v", err)
	}
}

// labelledEntry is what the watcher wrote down of rel, if anything.
func (f *fixture) labelledEntry(rel string) (inventory.File, bool) {
	f.t.Helper()
	l, err := inventory.LoadLabelled(f.state)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, e := range l.Files {
		if e.Path == f.path(rel) {
			return e, true
		}
	}
	return inventory.File{}, false
}

// prepareCooperative prepares vm1 with the standard disks, as libvirt
// does at its start, and returns its XML for the release.
func (f *fixture) prepareCooperative() string {
	f.t.Helper()
	xml := f.domainXML("vm1", standardDisks)
	if res := run(strings.NewReader(xml), "vm1", "prepare", "begin", "-"); res.code != 0 {
		f.t.Fatalf("prepare = %+v", res)
	}
	return xml
}

// labelled chowns rel as libvirt would when labelling it for QEMU (or
// "restoring" it), and makes sure the watcher has written down the owner
// it had before.
func (f *fixture) labelled(rel string, uid, gid int) {
	f.t.Helper()
	if err := os.Chown(f.path(rel), uid, gid); err != nil {
		f.t.Fatal(err)
	}
	f.sync("vm1")
	if e, ok := f.labelledEntry(rel); !ok || !e.Proven {
		f.t.Fatalf("the watcher did not record %s being labelled by libvirt: %+v", rel, e)
	}
}

func TestTransientDiskByMode(t *testing.T) {
	for _, tc := range []struct {
		name, qemuConf string
		code           int
	}{
		{"strict refuses", "dynamic_ownership = 0\n", 1},
		{"cooperative accepts", "dynamic_ownership = 1\n", 0},
		{"libvirt default is cooperative", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\n%s", qemuID, qemuID, tc.qemuConf))
			before := f.owners()
			res := run(strings.NewReader(f.domainXML("vm1", transientDisk)), "vm1", "prepare", "begin", "-")
			if res.code != tc.code || res.stdout != "" {
				t.Fatalf("prepare = exit %d, stdout %q, stderr %q; want exit %d", res.code, res.stdout, res.stderr, tc.code)
			}
			if tc.code != 0 {
				if !strings.Contains(res.stderr, "disk vda is <transient/>") || !strings.Contains(res.stderr, "dynamic_ownership = 1") || strings.Count(res.stderr, "\n") != 1 {
					t.Errorf("prepare stderr = %q, want one line naming the disk and the fix", res.stderr)
				}
				f.checkOwners(before)
				f.checkNoEntries()
				return
			}
			f.checkOwners(map[string]string{f.path("img/disk.raw"): qemuOwner})
			if res := run(strings.NewReader(f.domainXML("vm1", transientDisk)), "vm1", "release", "end", "-"); res.code != 0 {
				t.Fatalf("release = %+v", res)
			}
			f.checkOwners(before)
		})
	}
}

// TestCooperativeLiveLabels plays libvirt's DAC driver during a run in
// cooperative mode: it labels files the hook never saw at prepare (a
// hot-plugged disk, an inserted ISO) and leaves them to QEMU or "restores"
// them to root:root. Release must give each its owner from prepare time,
// and leave alone what no record vouches for.
func TestCooperativeLiveLabels(t *testing.T) {
	f := newFixture(t)
	f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\ndynamic_ownership = 1\n", qemuID, qemuID))
	f.write("img/hot.raw", "hot", imageUID)
	f.write("img/inserted.iso", "iso", imageUID+1)
	f.write("img/admin.raw", "admin", imageUID)
	before := f.owners()
	xml := f.prepareCooperative()
	f.startWatcher()
	// During the run, libvirt labels what the live operations bring in.
	f.labelled("img/hot.raw", qemuID, qemuID)      // attach-disk, left to QEMU
	f.labelled("img/inserted.iso", qemuID, qemuID) // change-media ...
	// ... then libvirt "restores" it to root:root (no record: remember_owner = 0).
	if err := os.Chown(f.path("img/inserted.iso"), 0, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	// An administrator's own change.
	if err := os.Chown(f.path("img/admin.raw"), 4242, 4242); err != nil {
		t.Fatal(err)
	}
	f.write("img/overlay.qcow2", "new", 0) // created by libvirt during the run
	time.Sleep(50 * time.Millisecond)
	f.labelled("img/overlay.qcow2", qemuID, qemuID) // ... and labelled
	if res := run(strings.NewReader(xml), "vm1", "release", "end", "-"); res.code != 0 {
		t.Fatalf("release = %+v", res)
	}
	want := map[string]string{}
	for p, o := range before {
		want[p] = o
	}
	want[f.path("img/admin.raw")] = "4242:4242"
	want[f.path("img/overlay.qcow2")] = "0:0" // as libvirt created it
	f.checkOwners(want)
	f.checkNoEntries()
}

// TestStartVerifiesLibvirtsChain: at "start begin" libvirt has labelled
// the chain it found itself; an image there that prepare never checked
// stops the start.
func TestStartVerifiesLibvirtsChain(t *testing.T) {
	f := newFixture(t)
	f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\ndynamic_ownership = 1\n", qemuID, qemuID))
	f.write("img/swapped.raw", "x", imageUID)
	const top = `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$ROOT/img/top.qcow2'/><target dev='vda' bus='virtio'/></disk>`
	chain := func(base string) string {
		return `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$ROOT/img/top.qcow2'/>
  <backingStore type='file'><format type='raw'/><source file='$ROOT/img/` + base + `'/><backingStore/></backingStore><target dev='vda' bus='virtio'/></disk>`
	}
	if res := run(strings.NewReader(f.domainXML("vm1", top)), "vm1", "prepare", "begin", "-"); res.code != 0 {
		t.Fatalf("prepare = %+v", res)
	}
	if res := run(strings.NewReader(f.domainXML("vm1", chain("base.raw"))), "vm1", "start", "begin", "-"); res.code != 0 {
		t.Errorf("start begin with the chain prepare checked = %+v, want exit 0", res)
	}
	res := run(strings.NewReader(f.domainXML("vm1", chain("swapped.raw"))), "vm1", "start", "begin", "-")
	if res.code != 1 || !strings.Contains(res.stderr, "swapped.raw") || !strings.Contains(res.stderr, "prepare did not check it") || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("start begin with an unchecked backing file = exit %d, stderr %q; want exit 1 naming it", res.code, res.stderr)
	}
	// Strict mode: libvirt labels nothing, but QEMU opens the chain the
	// headers name at start; it too must be what prepare checked.
	f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\ndynamic_ownership = 0\n", qemuID, qemuID))
	if res := run(strings.NewReader(f.domainXML("vm1", chain("base.raw"))), "vm1", "start", "begin", "-"); res.code != 0 {
		t.Errorf("start begin in strict mode with the chain prepare checked = %+v, want exit 0", res)
	}
	res = run(strings.NewReader(f.domainXML("vm1", chain("swapped.raw"))), "vm1", "start", "begin", "-")
	if res.code != 1 || !strings.Contains(res.stderr, "swapped.raw") || !strings.Contains(res.stderr, "prepare did not check it") {
		t.Errorf("start begin in strict mode with an unchecked backing file = exit %d, stderr %q; want exit 1 naming it", res.code, res.stderr)
	}
	f.checkOwners(map[string]string{f.path("img/swapped.raw"): fmt.Sprintf("%d:%d", imageUID, imageUID)})
}

// TestRestoreStaleInventory: a domain whose release never came (libvirtd
// killed, host crash) leaves its inventory; restore --stale gives back
// what libvirt labelled during that run, and only once the domain is
// not running.
func TestRestoreStaleInventory(t *testing.T) {
	f := newFixture(t)
	f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\n", qemuID, qemuID))
	f.write("img/hot.raw", "hot", imageUID)
	f.fakeRunning("vm1")
	f.prepareCooperative()
	f.startWatcher()
	f.labelled("img/hot.raw", qemuID, qemuID) // libvirt's attach-disk
	if res := run(noRead{t}, "restore", "--stale"); res.code != 0 {
		t.Fatalf("restore --stale = %+v", res)
	}
	f.checkOwners(map[string]string{f.path("img/hot.raw"): qemuOwner}) // vm1 still runs
	if err := os.Remove(f.path("run/vm1.pid")); err != nil {
		t.Fatal(err)
	}
	if res := run(noRead{t}, "restore", "--stale"); res.code != 0 {
		t.Fatalf("restore --stale = %+v", res)
	}
	f.checkOwners(map[string]string{f.path("img/hot.raw"): fmt.Sprintf("%d:%d", imageUID, imageUID)})
	if r, err := inventory.Load(f.state, "vm1"); r != nil || err != nil {
		t.Errorf("vm1's record after restore --stale: %+v, %v; want none", r, err)
	}
}

// TestPlanReleaseShowsLiveFiles: the dry run of a release in cooperative
// mode lists the files of the inventory release would give back, decided
// by the same code.
func TestPlanReleaseShowsLiveFiles(t *testing.T) {
	f := newFixture(t)
	f.write("img/hot.raw", "hot", imageUID)
	xml := f.prepareCooperative()
	f.startWatcher()
	f.labelled("img/hot.raw", qemuID, qemuID)
	res := run(strings.NewReader(xml), "plan", "--op", "release", "-")
	if res.code != 0 {
		t.Fatalf("plan --op release = %+v", res)
	}
	var line string
	for _, l := range strings.Split(res.stdout, "\n") {
		if strings.Contains(l, "hot.raw") {
			line = l
		}
	}
	if !strings.HasPrefix(line, "chown") || !strings.Contains(line, "live") || !strings.Contains(line, fmt.Sprintf("%d:%d", imageUID, imageUID)) {
		t.Errorf("plan --op release line for hot.raw = %q, want chown (live) back to %d:%d\n%s", line, imageUID, imageUID, res.stdout)
	}
	if got := ownerOf(t, f.path("img/hot.raw")); got != qemuOwner {
		t.Errorf("the dry run changed hot.raw to %s", got)
	}
	if res := run(strings.NewReader(xml), "vm1", "release", "end", "-"); res.code != 0 {
		t.Fatalf("release = %+v", res)
	}
	f.checkOwners(map[string]string{f.path("img/hot.raw"): fmt.Sprintf("%d:%d", imageUID, imageUID)})
}

// TestCooperativeFileCreatedAfterStart: a disk created after the domain
// started, then hot-plugged (libvirt labels it), gets its owner back at
// release because the watcher saw it appear.
func TestCooperativeFileCreatedAfterStart(t *testing.T) {
	f := newFixture(t)
	xml := f.prepareCooperative()
	f.startWatcher()
	f.write("img/late.raw", "late", imageUID+2)
	time.Sleep(50 * time.Millisecond) // the admin types virsh attach-disk
	f.labelled("img/late.raw", qemuID, qemuID)
	if res := run(strings.NewReader(xml), "vm1", "release", "end", "-"); res.code != 0 {
		t.Fatalf("release = %+v", res)
	}
	f.checkOwners(map[string]string{f.path("img/late.raw"): fmt.Sprintf("%d:%d", imageUID+2, imageUID+2)})
}

// TestLiveFileOpenByQEMUKept: a file libvirt labelled that some running
// QEMU still holds open (another domain's hot-plug) is not given back at
// release; the domain's record stays, and restore gives the file back once
// no QEMU holds it.
func TestLiveFileOpenByQEMUKept(t *testing.T) {
	f := newFixture(t)
	f.write("img/shared.iso", "iso", imageUID)
	xml := f.prepareCooperative()
	f.startWatcher()
	f.labelled("img/shared.iso", qemuID, qemuID)
	qemu := f.fakeQEMUHolding("img/shared.iso")
	if res := run(strings.NewReader(xml), "vm1", "release", "end", "-"); res.code != 0 {
		t.Fatalf("release = %+v", res)
	}
	f.checkOwners(map[string]string{f.path("img/shared.iso"): qemuOwner})
	if r, err := inventory.Load(f.state, "vm1"); r == nil || err != nil {
		t.Fatalf("vm1's record after a release that kept a file: %v, %v; want it kept", r, err)
	}
	if err := qemu.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = qemu.Wait()
	if res := run(noRead{t}, "restore", "--domain", "vm1"); res.code != 0 {
		t.Fatalf("restore --domain vm1 = %+v", res)
	}
	f.checkOwners(map[string]string{f.path("img/shared.iso"): fmt.Sprintf("%d:%d", imageUID, imageUID)})
}

// TestCooperativeSymlinkedImagesDir: /var/lib/libvirt/images is often a
// symlink to a bigger disk. inotify does not follow it, so the record
// names where it leads, and a file hot-plugged from there gets its owner
// back at release.
func TestCooperativeSymlinkedImagesDir(t *testing.T) {
	f := newFixture(t)
	if err := os.Mkdir(f.path("srv-images"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := f.path("libvirt-images")
	if err := os.Symlink(f.path("srv-images"), link); err != nil {
		t.Fatal(err)
	}
	defer cli.SetLiveDirs([]string{link})()
	xml := f.prepareCooperative()
	r, err := inventory.Load(f.state, "vm1")
	if err != nil || r == nil {
		t.Fatalf("vm1's record: %v, %v", r, err)
	}
	if !slices.Contains(r.Dirs, f.path("srv-images")) || slices.Contains(r.Dirs, link) {
		t.Errorf("record dirs = %v, want %s (where the link leads), not the link", r.Dirs, f.path("srv-images"))
	}
	f.startWatcher()
	f.write("srv-images/hot.iso", "iso", imageUID+3)
	time.Sleep(50 * time.Millisecond) // the admin types virsh attach-disk
	f.labelled("srv-images/hot.iso", qemuID, qemuID)
	if res := run(strings.NewReader(xml), "vm1", "release", "end", "-"); res.code != 0 {
		t.Fatalf("release = %+v", res)
	}
	f.checkOwners(map[string]string{f.path("srv-images/hot.iso"): fmt.Sprintf("%d:%d", imageUID+3, imageUID+3)})
}
