package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Accounts of the shared-base scenario: the base belongs to one account,
// the overlays naming it to another, and neither is root or QEMU.
const (
	baseUID, baseGID       = 1201, 2201
	overlayUID, overlayGID = 1202, 2202
)

// sharedBase lays out n overlays, each owned by overlayUID and naming one
// base owned by baseUID, in img/ (root-owned 0755 unless dirOwner says
// otherwise), and returns the domain XMLs.
func sharedBase(f *fixture, n int, dirOwner int) []string {
	f.t.Helper()
	f.write("img/shared-base.raw", "base", baseUID)
	if err := os.Chown(f.path("img/shared-base.raw"), baseUID, baseGID); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chown(f.path("img"), dirOwner, dirOwner); err != nil {
		f.t.Fatal(err)
	}
	var xmls []string
	for i := range n {
		rel := fmt.Sprintf("img/ov%d.qcow2", i)
		f.qcow2(rel, "shared-base.raw", "raw", overlayUID)
		if err := os.Chown(f.path(rel), overlayUID, overlayGID); err != nil {
			f.t.Fatal(err)
		}
		for _, p := range []string{rel, "img/shared-base.raw"} {
			if err := os.Chmod(f.path(p), 0o600); err != nil {
				f.t.Fatal(err)
			}
		}
		xmls = append(xmls, f.domainXML(fmt.Sprintf("sb%d", i),
			fmt.Sprintf(`<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$ROOT/%s'/><target dev='vda' bus='virtio'/></disk>`, rel)))
	}
	return xmls
}

// sharedBaseModes are qemu.conf settings of strict and cooperative mode.
var sharedBaseModes = []struct{ name, qemuConf string }{
	{"strict", "dynamic_ownership = 0\n"},
	{"cooperative", "dynamic_ownership = 1\n"},
}

func (f *fixture) useMode(qemuConf string) {
	f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\n%s", qemuID, qemuID, qemuConf))
	// The owner rule is what is under test, not the watcher.
	f.writeConf("live_watch = 0\n")
}

// TestSharedBaseForeignOwner: a base owned by one account in a directory
// only root can write, under overlays owned by another, serves every
// domain using it, not only the first: the second prepare finds the base
// already QEMU's and must judge it by its recorded owner with the same
// exemption the first one had.
func TestSharedBaseForeignOwner(t *testing.T) {
	for _, m := range sharedBaseModes {
		t.Run(m.name, func(t *testing.T) {
			f := newFixture(t)
			f.useMode(m.qemuConf)
			xmls := sharedBase(f, 2, 0)
			before := f.owners()
			for i, x := range xmls {
				if res := run(strings.NewReader(x), fmt.Sprintf("sb%d", i), "prepare", "begin", "-"); res.code != 0 {
					t.Fatalf("prepare sb%d = %d, stderr %q", i, res.code, res.stderr)
				}
			}
			base := f.path("img/shared-base.raw")
			if got := ownerOf(t, base); got != qemuOwner {
				t.Errorf("base while both run: owner %s, want %s", got, qemuOwner)
			}
			if res := run(strings.NewReader(xmls[0]), "sb0", "release", "end", "-"); res.code != 0 {
				t.Fatalf("release sb0 = %d, stderr %q", res.code, res.stderr)
			}
			if got := ownerOf(t, base); got != qemuOwner {
				t.Errorf("base while sb1 still runs: owner %s, want %s", got, qemuOwner)
			}
			if res := run(strings.NewReader(xmls[1]), "sb1", "release", "end", "-"); res.code != 0 {
				t.Fatalf("release sb1 = %d, stderr %q", res.code, res.stderr)
			}
			f.checkOwners(before)
			f.checkNoEntries()
		})
	}
}

// TestSharedBaseForeignOwnerConcurrent: six hook processes prepare six
// domains on one foreign-owned base at once; all start, and all owners are
// back after the six releases (also concurrent).
func TestSharedBaseForeignOwnerConcurrent(t *testing.T) {
	bin := buildHook(t)
	for _, m := range sharedBaseModes {
		t.Run(m.name, func(t *testing.T) {
			f := newFixture(t)
			f.useMode(m.qemuConf)
			xmls := sharedBase(f, 6, 0)
			before := f.owners()
			hookAll := func(op, sub string) {
				var wg sync.WaitGroup
				for i, x := range xmls {
					wg.Add(1)
					go func() {
						defer wg.Done()
						cmd := exec.Command(bin, fmt.Sprintf("sb%d", i), op, sub, "-")
						cmd.Env = hookEnv(f.conf)
						cmd.Stdin = strings.NewReader(x)
						if out, err := cmd.CombinedOutput(); err != nil {
							t.Errorf("%s sb%d: %v: %s", op, i, err, out)
						}
					}()
				}
				wg.Wait()
			}
			hookAll("prepare", "begin")
			if t.Failed() {
				t.FailNow()
			}
			for i := range xmls {
				if got := ownerOf(t, f.path(fmt.Sprintf("img/ov%d.qcow2", i))); got != qemuOwner {
					t.Errorf("overlay %d while running: owner %s, want %s", i, got, qemuOwner)
				}
			}
			hookAll("release", "end")
			f.checkOwners(before)
			f.checkNoEntries()
		})
	}
}

// TestSharedBaseWritableDirRefusedAlike: where the base's directory is
// writable by the base's owner, the exemption does not apply, and the
// verdict is the same for every domain: the first is refused as the
// second would be, and nothing changes on disk.
func TestSharedBaseWritableDirRefusedAlike(t *testing.T) {
	f := newFixture(t)
	f.useMode("dynamic_ownership = 0\n")
	xmls := sharedBase(f, 2, baseUID)
	before := f.owners()
	for i, x := range xmls {
		res := run(strings.NewReader(x), fmt.Sprintf("sb%d", i), "prepare", "begin", "-")
		if res.code != 1 || !strings.Contains(res.stderr, fmt.Sprintf("owned by uid %d", baseUID)) {
			t.Errorf("prepare sb%d = %d, stderr %q; want 1 and the owner rule's refusal", i, res.code, res.stderr)
		}
	}
	f.checkOwners(before)
	f.checkNoEntries()
}
