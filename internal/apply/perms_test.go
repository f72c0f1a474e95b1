package apply

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// asQEMU runs argv as QEMU's user, as a compromised QEMU would.
func asQEMU(t *testing.T, argv ...string) {
	t.Helper()
	args := append([]string{"--reuid=" + strconv.Itoa(qemuUID), "--regid=" + strconv.Itoa(qemuGID), "--clear-groups", "--"}, argv...)
	if out, err := exec.Command("setpriv", args...).CombinedOutput(); err != nil {
		t.Fatalf("as QEMU: %s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// getfacl is the file's ACL as getfacl prints it, numerically, without
// the header.
func getfacl(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("getfacl", "-n", "-p", "--omit-header", p).CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl %s: %v: %s", p, err, out)
	}
	return strings.TrimSpace(string(out))
}

func modeOf(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777
}

// TestReleasePutsBackModeAndACL: while QEMU owns root's 0600 image it
// adds an ACL entry for an accomplice and opens the mode; release gives
// back the owner and the recorded mode and ACL (none), as getfacl sees
// them. When the owner found at release is not one QEMU's run explains
// (an admin's chown), the mode and ACL found are left as well.
func TestReleasePutsBackModeAndACL(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cooperative bool
		// libvirt is what libvirt's own restore did before release: the
		// owner it put back ("" none, "orig", "root"), or "admin" for an
		// administrator's chown while the domain ran.
		libvirt  string
		restored bool
	}{
		{name: "strict", restored: true},
		{name: "cooperative, libvirt left it to QEMU", cooperative: true, restored: true},
		{name: "cooperative, libvirt remembered the owner", cooperative: true, libvirt: "orig", restored: true},
		{name: "cooperative, libvirt restored root:root", cooperative: true, libvirt: "root", restored: true},
		{name: "an admin gave it another owner", libvirt: "admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "a.img")
			f.searchable()
			p := f.path("a.img")
			before := getfacl(t, p)
			if err := f.prepare("vm1", "a.img"); err != nil {
				t.Fatal(err)
			}
			f.wantOwner("a.img", qemu)
			asQEMU(t, "setfacl", "-m", "u:4242:rw-", p)
			asQEMU(t, "chmod", "o+rw", p)
			attacked := getfacl(t, p)
			if !strings.Contains(attacked, "user:4242:rw-") {
				t.Fatalf("the attack did not take: %s", attacked)
			}
			switch tc.libvirt {
			case "orig":
				o := f.orig[p]
				if err := os.Chown(p, int(o[0]), int(o[1])); err != nil {
					t.Fatal(err)
				}
			case "root":
				if err := os.Chown(p, 0, 0); err != nil {
					t.Fatal(err)
				}
			case "admin":
				if err := os.Chown(p, 4343, 4343); err != nil {
					t.Fatal(err)
				}
			}
			r := f.runner(nil)
			r.Cooperative = tc.cooperative
			if err := r.Release("vm1", "-"); err != nil {
				t.Fatal(err)
			}
			got := getfacl(t, p)
			if !tc.restored {
				if got != attacked {
					t.Errorf("getfacl after release = %q, want the admin's owner's file left as found (%q)", got, attacked)
				}
				f.wantOwner("a.img", [2]uint32{4343, 4343})
				return
			}
			f.wantOwner("a.img", f.orig[p])
			if got != before {
				t.Errorf("getfacl after release = %q, want %q as before prepare", got, before)
			}
			if m := modeOf(t, p); m != 0o600 {
				t.Errorf("mode after release = %04o, want 0600", m)
			}
			if _, err := unix.Getxattr(p, "system.posix_acl_access", nil); err != unix.ENODATA {
				t.Errorf("access ACL xattr after release: getxattr = %v, want ENODATA", err)
			}
			// The administrator's change after release is theirs: a
			// later release or restore does not touch it.
			if err := exec.Command("setfacl", "-m", "u:4545:r--", p).Run(); err != nil {
				t.Fatal(err)
			}
			if err := r.Release("vm1", "-"); err != nil {
				t.Fatal(err)
			}
			if err := r.Restore(Selector{Stale: true}); err != nil {
				t.Fatal(err)
			}
			if got := getfacl(t, p); !strings.Contains(got, "user:4545:r--") {
				t.Errorf("getfacl after the admin's setfacl and another release = %q, want the admin's entry kept", got)
			}
		})
	}
}

// TestReleasePutsBackRecordedACL: a file with an ACL of its own (the
// admin's user:4545:r--, mode 0640) that QEMU widens gets exactly that ACL
// and mode back.
func TestReleasePutsBackRecordedACL(t *testing.T) {
	f := newFixture(t, "a.img")
	f.searchable()
	p := f.path("a.img")
	if out, err := exec.Command("setfacl", "-m", "u:4545:r--,g::r--", p).CombinedOutput(); err != nil {
		t.Fatalf("setfacl: %v: %s", err, out)
	}
	before, beforeMode := getfacl(t, p), modeOf(t, p)
	if err := f.prepare("vm1", "a.img"); err != nil {
		t.Fatal(err)
	}
	asQEMU(t, "setfacl", "-m", "u:4545:rw-,u:4242:rwx,m::rwx", p)
	asQEMU(t, "chmod", "u+s", p)
	if err := f.runner(nil).Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("a.img", f.orig[p])
	if got := getfacl(t, p); got != before {
		t.Errorf("getfacl after release = %q, want %q", got, before)
	}
	if m := modeOf(t, p); m != beforeMode {
		t.Errorf("mode after release = %04o, want %04o", m, beforeMode)
	}
}

// TestPlanReleaseShowsPerms: the dry run of a release says the mode and
// ACL it would put back, and changes neither.
func TestPlanReleaseShowsPerms(t *testing.T) {
	f := newFixture(t, "a.img")
	f.searchable()
	p := f.path("a.img")
	if err := f.prepare("vm1", "a.img"); err != nil {
		t.Fatal(err)
	}
	asQEMU(t, "chmod", "0666", p)
	st, err := journal.LoadFile(journal.StatePath(f.state))
	if err != nil {
		t.Fatal(err)
	}
	ds := f.runner(nil).PlanRelease(st, "vm1", "-")
	if len(ds) != 1 || ds[0].Verdict != GiveBack || ds[0].Perms != "mode 0666 → mode 0600" {
		t.Fatalf("PlanRelease = %+v, want one give-back putting back mode 0600", ds)
	}
	if m := modeOf(t, p); m != 0o666 {
		t.Errorf("mode after the dry run = %04o, want 0666 still", m)
	}
}

// TestReleasePutsBackDevicePerms: the same for a block device node (a
// loop device's): QEMU's chmod 0666 and ACL entry on the node it was
// given would otherwise open the disk to every user after release.
func TestReleasePutsBackDevicePerms(t *testing.T) {
	f := newFixture(t)
	f.searchable()
	img := f.path("backing.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	var st unix.Stat_t
	if err := unix.Stat(loop, &st); err != nil {
		t.Fatal(err)
	}
	node := f.path("vdb")
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(node, 0, 6); err != nil {
		t.Fatal(err)
	}
	before := getfacl(t, node)
	d := &domain.Domain{Name: "vm1", Relabel: true}
	d.Resources = append(d.Resources, domain.Resource{Path: node, Kind: domain.KindDisk, From: "disk[0]", Expect: domain.TypeBlock, Format: "raw"})
	p, err := plan.Build(d, plan.Env{RunAs: config.Identity{UID: qemuUID, GID: qemuGID}, MaxDepth: 8, ResolveLabel: config.ParseLabel, ParentACL: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := f.runner(nil)
	if err := r.Prepare(p); err != nil {
		t.Fatal(err)
	}
	asQEMU(t, "chmod", "0666", node)
	asQEMU(t, "setfacl", "-m", "u:4242:rw-", node)
	if err := r.Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	if got := ownerOf(t, node); got != [2]uint32{0, 6} {
		t.Errorf("owner of the node after release = %v, want 0:6", got)
	}
	if got := getfacl(t, node); got != before {
		t.Errorf("getfacl of the node after release = %q, want %q", got, before)
	}
	if m := modeOf(t, node); m != 0o600 {
		t.Errorf("mode of the node after release = %04o, want 0600", m)
	}
}

// TestReleaseAfterQEMUsChgrp: QEMU's user, a member of another group too,
// gives its disk that group (and group read-write) while it runs, so as
// not to match the owner release expects. The file is still QEMU's
// user's: release gives back the original owner, mode and ACL.
func TestReleaseAfterQEMUsChgrp(t *testing.T) {
	f := newFixture(t, "a.img")
	f.searchable()
	p := f.path("a.img")
	if err := f.prepare("vm1", "a.img"); err != nil {
		t.Fatal(err)
	}
	args := []string{"--reuid=" + strconv.Itoa(qemuUID), "--regid=" + strconv.Itoa(qemuGID), "--groups=4343", "--", "sh", "-c", "chgrp 4343 " + p + " && chmod g+rw " + p}
	if out, err := exec.Command("setpriv", args...).CombinedOutput(); err != nil {
		t.Fatalf("as QEMU: chgrp: %v: %s", err, out)
	}
	if got := ownerOf(t, p); got != [2]uint32{qemuUID, 4343} {
		t.Fatalf("the chgrp did not take: %v", got)
	}
	if err := f.runner(nil).Release("vm1", "-"); err != nil {
		t.Fatal(err)
	}
	f.wantOwner("a.img", f.orig[p])
	if m := modeOf(t, p); m != 0o600 {
		t.Errorf("mode after release = %04o, want 0600", m)
	}
}
