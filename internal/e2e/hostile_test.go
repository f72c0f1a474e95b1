//go:build e2e

package e2e

// A compromised QEMU, while it owns an image, adds an ACL entry for an
// accomplice and opens the mode: after the domain is destroyed the image
// has its owner, mode and ACL back, as getfacl shows them, in strict mode
// and in cooperative mode with libvirt remembering owners.

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func getfaclOf(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("getfacl", "-n", "-p", "--omit-header", p).CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl %s: %v: %s", p, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestQEMUsACLTakenBack(t *testing.T) {
	for _, m := range []ownershipMode{strictMode, coopRemember} {
		t.Run(m.name, func(t *testing.T) {
			f := newFixture(t)
			f.h.useMode(t, m)
			alice, bob, q := f.h.alice.owner(), f.h.bob.owner(), f.h.qemu.owner()
			img := f.image("disk.raw", "raw", "8M", "", alice, 0o600)
			before := getfaclOf(t, img)
			name := domainPrefix + "acl-" + m.name
			f.mustStart(domainSpec{Name: name, Disks: []disk{fileDisk("raw", img, "vda")}})
			as := []string{"--reuid=" + strconv.Itoa(q.uid), "--regid=" + strconv.Itoa(q.gid), "--clear-groups", "--"}
			for _, argv := range [][]string{{"setfacl", "-m", "u:" + strconv.Itoa(bob.uid) + ":rw-", img}, {"chmod", "o+rw", img}} {
				if out, err := exec.Command("setpriv", append(as, argv...)...).CombinedOutput(); err != nil {
					t.Fatalf("as QEMU's user: %s: %v: %s", strings.Join(argv, " "), err, out)
				}
			}
			if got := getfaclOf(t, img); !strings.Contains(got, "user:"+strconv.Itoa(bob.uid)+":rw-") {
				t.Fatalf("the attack did not take: %s", got)
			}
			f.destroy(name)
			o, mode, _, err := statOwner(img)
			if err != nil {
				t.Fatal(err)
			}
			if o != alice || mode.Perm() != 0o600 {
				t.Errorf("after destroy %s is %s mode %o, want %s mode 600", img, o, mode.Perm(), alice)
			}
			if got := getfaclOf(t, img); got != before {
				t.Errorf("getfacl after destroy = %q, want %q", got, before)
			}
		})
	}
}
