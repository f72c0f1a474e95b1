//go:build e2e

package e2e

// Images under a 0700 directory: the hook grants QEMU search permission
// with one ACL entry and takes exactly that back. Each scenario first
// starts its domain with <seclabel type='none' model='dac'/>, which keeps
// both the hook and libvirt's own driver away: that start must fail, or the
// scenario would pass even if nothing was granted.

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParentDir0700(t *testing.T) { parentDir0700(t) }

// dirState is everything about a directory the hook might touch: its mode
// and owner, getfacl's view and the raw access ACL xattr (getfacl prints a
// minimal ACL the same whether or not the xattr exists).
type dirState struct {
	Stat    string // stat -c '%a %u:%g'
	Getfacl string // getfacl -p
	XattrHx string // hex of system.posix_acl_access, or "absent"
}

func snapDir(t *testing.T, p string) dirState {
	t.Helper()
	var s dirState
	out, err := exec.Command("stat", "-c", "%a %u:%g", p).CombinedOutput()
	if err != nil {
		t.Fatalf("stat %s: %v: %s", p, err, out)
	}
	s.Stat = strings.TrimSpace(string(out))
	out, err = exec.Command("getfacl", "-p", p).CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl -p %s: %v: %s", p, err, out)
	}
	s.Getfacl = string(out)
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(p, "system.posix_acl_access", buf)
	switch {
	case errors.Is(err, unix.ENODATA):
		s.XattrHx = "absent"
	case err != nil:
		t.Fatalf("getxattr %s system.posix_acl_access: %v", p, err)
	default:
		s.XattrHx = hex.EncodeToString(buf[:n])
	}
	return s
}

// dirSet is a set of directories whose state must come back byte for byte.
type dirSet struct {
	f      *fixture
	paths  []string
	before map[string]dirState
}

func (f *fixture) watchDirs(paths ...string) *dirSet {
	f.t.Helper()
	d := &dirSet{f: f, paths: paths, before: map[string]dirState{}}
	for _, p := range paths {
		d.before[p] = snapDir(f.t, p)
	}
	return d
}

// same requires every directory to be as it was when watched.
func (d *dirSet) same(phase string, domains ...string) {
	d.f.t.Helper()
	d.unchangedExcept(phase, nil, domains...)
}

// unchangedExcept requires every directory but the listed ones to be as it
// was when watched.
func (d *dirSet) unchangedExcept(phase string, skip []string, domains ...string) {
	t := d.f.t
	t.Helper()
	ok := true
	for _, p := range d.paths {
		if slices.Contains(skip, p) {
			continue
		}
		if diff := cmp.Diff(d.before[p], snapDir(t, p)); diff != "" {
			t.Errorf("%s: directory %s changed (mode, owner or ACL; diff below)", phase, p)
			logBlock(t, "-before +now of "+p, diff)
			ok = false
		}
	}
	if !ok {
		d.f.host.diagnose(t, domains...)
	}
}

// requireSearchACL checks that dir has a user:<uid> entry whose effective
// permissions (after the mask) include search, and that the mode's owner
// and other bits are as before (the group bits show the mask, which may
// have to widen for the entry to count).
func (d *dirSet) requireSearchACL(phase, dir string, uid int, domains ...string) {
	t := d.f.t
	t.Helper()
	out, err := exec.Command("getfacl", "-p", "-n", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl -p -n %s: %v: %s", dir, err, out)
	}
	prefix := fmt.Sprintf("user:%d:", uid)
	var entry string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix) {
			entry = line
		}
	}
	ok := true
	if entry == "" {
		t.Errorf("%s: %s has no %s entry (QEMU's search grant)", phase, dir, prefix)
		logBlock(t, "getfacl -p -n "+dir, string(out))
		ok = false
	} else {
		perm, eff, _ := strings.Cut(strings.TrimPrefix(entry, prefix), "#effective:")
		perm = strings.TrimSpace(perm)
		if !strings.Contains(perm, "x") || (eff != "" && !strings.Contains(eff, "x")) {
			t.Errorf("%s: %s entry %q does not grant search", phase, dir, entry)
			ok = false
		}
	}
	before, now := d.before[dir].Stat, snapDir(t, dir).Stat
	if !sameOwnerOther(before, now) {
		t.Errorf("%s: %s is %q while the VM runs, was %q: only the group class (mask) may change", phase, dir, now, before)
		ok = false
	}
	if !ok {
		d.f.host.diagnose(t, domains...)
	}
}

// sameOwnerOther compares two "%a uid:gid" strings except for the group
// digit of the mode.
func sameOwnerOther(a, b string) bool {
	am, ao, _ := strings.Cut(a, " ")
	bm, bo, _ := strings.Cut(b, " ")
	if ao != bo || len(am) != len(bm) || len(am) < 3 {
		return false
	}
	n := len(am)
	return am[:n-2] == bm[:n-2] && am[n-1] == bm[n-1]
}

// homeLayout builds <fixture>/home/alice/vms: home root's 0755, alice's
// 0700 (so nobody else can reach below it), vms alice's 0755, with a base
// image and overlays (owned by alice, 0600) in vms.
type homeLayout struct {
	home, alice, vms string
	base             string
}

func (f *fixture) homeLayout(aliceMode os.FileMode) homeLayout {
	f.t.Helper()
	a := f.h.alice.owner()
	l := homeLayout{home: filepath.Join(f.dir, "home")}
	l.alice = filepath.Join(l.home, "alice")
	l.vms = filepath.Join(l.alice, "vms")
	for _, d := range []string{l.home, l.alice, l.vms} {
		if err := os.Mkdir(d, 0o755); err != nil {
			f.t.Fatalf("mkdir %s: %v", d, err)
		}
	}
	setOwner(f.t, l.home, owner{0, 0}, 0o755)
	setOwner(f.t, l.vms, a, 0o755)
	l.base = f.image("home/alice/vms/base.qcow2", "qcow2", "16M", "", a, 0o600)
	// The 0700 goes on last: qemu-img runs as root, but keep the images'
	// creation independent of the mode under test.
	setOwner(f.t, l.alice, a, aliceMode)
	return l
}

func (f *fixture) overlay(l homeLayout, name string) string {
	f.t.Helper()
	return f.image("home/alice/vms/"+name, "qcow2", "", l.base, f.h.alice.owner(), 0o600)
}

// parentDir0700: a VM whose images (overlay and its backing file) sit
// two levels below a 0700 home directory starts, and afterwards every
// directory on the way is byte for byte as before.
func parentDir0700(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	l := f.homeLayout(0o700)
	over := f.overlay(l, "disk.qcow2")
	f.track(l.base, q)
	f.track(over, q)
	dirs := f.watchDirs(f.dir, l.home, l.alice, l.vms)

	name := domainPrefix + "home0700"
	spec := domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", over, "vda")}}
	f.mustFailWithoutHook(spec, "Permission denied")
	dirs.same("after the control start", name)

	f.mustStart(spec)
	f.check("running", true, name)
	dirs.requireSearchACL("running", l.alice, q.uid, name)
	dirs.unchangedExcept("running", []string{l.alice}, name)
	f.destroy(name)
	f.check("after destroy", false, name)
	dirs.same("after destroy", name)
}

// TestParentDir0700Shared: two VMs need the same 0700 directory; the
// search grant stays until the last of them is gone, whichever goes first.
func TestParentDir0700Shared(t *testing.T) {
	for _, tc := range []struct {
		name  string
		order [2]int // indexes into the two domains, in the order destroyed
	}{
		{"first-started-released-first", [2]int{0, 1}},
		{"last-started-released-first", [2]int{1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			q := f.h.qemu.owner()
			l := f.homeLayout(0o700)
			baseT := f.track(l.base, q)
			var names [2]string
			var overs [2]*tracked
			for i := range 2 {
				overs[i] = f.track(f.overlay(l, fmt.Sprintf("vm%d.qcow2", i)), q)
				names[i] = fmt.Sprintf("%shomeshared-%d-%d", domainPrefix, tc.order[0], i)
			}
			dirs := f.watchDirs(f.dir, l.home, l.alice, l.vms)
			for i := range 2 {
				f.mustStart(domainSpec{Name: names[i], Disks: []disk{fileDisk("qcow2", overs[i].path, "vda")}})
			}
			all := names[:]
			f.check("both running", true, all...)
			dirs.requireSearchACL("both running", l.alice, q.uid, all...)

			first, second := tc.order[0], tc.order[1]
			f.destroy(names[first])
			phase := fmt.Sprintf("%s destroyed, %s running", names[first], names[second])
			ok := f.checkOne(phase, baseT, q)
			ok = f.checkOne(phase, overs[first], overs[first].orig) && ok
			ok = f.checkOne(phase, overs[second], q) && ok
			if !ok {
				f.host.diagnose(t, all...)
			}
			dirs.requireSearchACL(phase, l.alice, q.uid, all...)
			if out, err := virsh(10*time.Second, "domstate", names[second]); err != nil || out != "running" {
				t.Errorf("%s: domstate %s = %q, %v; want running", phase, names[second], out, err)
			}

			f.destroy(names[second])
			f.check("both destroyed", false, all...)
			dirs.same("both destroyed", all...)
		})
	}
}

// TestParentDirMaskedACL: the 0700 directory already has an ACL whose mask
// (r--) would hide a plain user:<qemu>:--x entry; the VM still starts and
// afterwards the ACL, mask included, is exactly as before.
func TestParentDirMaskedACL(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	l := f.homeLayout(0o700)
	over := f.overlay(l, "disk.qcow2")
	f.track(l.base, q)
	f.track(over, q)
	entries := fmt.Sprintf("u:%d:rwx,m::r--", f.h.bob.uid)
	if out, err := exec.Command("setfacl", "-m", entries, l.alice).CombinedOutput(); err != nil {
		t.Fatalf("setfacl -m %s %s: %v: %s", entries, l.alice, err, out)
	}
	dirs := f.watchDirs(f.dir, l.home, l.alice, l.vms)
	if st := dirs.before[l.alice]; st.XattrHx == "absent" || !strings.Contains(st.Getfacl, "mask::r--") {
		logBlock(t, "getfacl -p "+l.alice, st.Getfacl)
		t.Fatalf("setup: %s should carry an ACL with mask::r--", l.alice)
	}

	name := domainPrefix + "home-masked"
	spec := domainSpec{Name: name, Disks: []disk{fileDisk("qcow2", over, "vda")}}
	f.mustFailWithoutHook(spec, "Permission denied")
	dirs.same("after the control start", name)

	f.mustStart(spec)
	f.check("running", true, name)
	dirs.requireSearchACL("running", l.alice, q.uid, name)
	dirs.unchangedExcept("running", []string{l.alice}, name)
	// The entry only counts if the mask has x, and a wider mask also
	// widens user:bob (rwx, was effectively r--) while the VM runs.
	logBlock(t, "ACL of "+l.alice+" while the VM runs", snapDir(t, l.alice).Getfacl)
	f.destroy(name)
	f.check("after destroy", false, name)
	dirs.same("after destroy", name)
}
