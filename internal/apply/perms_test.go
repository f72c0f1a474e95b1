package apply

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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
