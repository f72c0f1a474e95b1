//go:build e2e

package e2e

// TestLive: live operations against a running domain, in every ownership
// mode the hook supports, plus the lifecycle scenarios (modeScenarios) in
// the cooperative modes (strict mode runs them as top-level tests):
//
//   - strict (dynamic_ownership = 0): the hook alone chowns. A file added
//     while the domain runs is first given to it with
//     `libvirt-dac-hook grant DOMAIN PATH...` (and given back early with
//     revoke, or at the domain's release); what cannot work without
//     libvirt's labelling (a <transient/> disk) is refused at prepare.
//   - cooperative, remember_owner = 1 and = 0 (dynamic_ownership = 1):
//     libvirt labels during the run; the hook records owners at prepare and
//     at release puts back every owner libvirt got wrong. The *Granted
//     variants also run grant (which then only records owners) and revoke.
//
// In every mode, after the domain stops every file has exactly its
// original owner and mode, and nothing in the scenario's directory is left
// to QEMU that was not QEMU's before (fixture.check). Files libvirt itself
// creates (snapshot overlays, blockcopy targets, save images) have no owner
// to go back to: they must just not stay QEMU's. Every step also logs an
// "observed" table of every file's owner, which shows what libvirt does in
// each mode.
//
// The modes are switched once per group (qemu.conf rewritten, libvirtd
// restarted); run one scenario with
//
//	go test -tags e2e -count=1 -v -run 'TestLive/coop-remember/AttachDetach' ./internal/e2e/

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

var liveModes = []ownershipMode{strictMode, coopRemember, coopNoRemember}

// liveScenarios: each runs in the modes its only function accepts (nil:
// every mode). The *Granted variants run in the cooperative modes only:
// in strict mode they are the same as their plain variant.
var liveScenarios = []struct {
	name string
	run  func(t *testing.T)
	only func(ownershipMode) bool
}{
	{"AttachDetach", func(t *testing.T) { attachDetach(t, false) }, nil},
	{"AttachDetachGranted", func(t *testing.T) { attachDetach(t, true) }, ownershipMode.cooperative},
	{"AttachDestroy", attachDestroy, nil},
	{"ChangeMedia", func(t *testing.T) { changeMedia(t, false) }, nil},
	{"ChangeMediaGranted", func(t *testing.T) { changeMedia(t, true) }, ownershipMode.cooperative},
	{"Snapshot", snapshotThenStop, nil},
	{"SnapshotBlockcommit", snapshotBlockcommit, nil},
	{"Blockcopy", func(t *testing.T) { blockcopyPivot(t, false) }, nil},
	{"BlockcopyDefined", func(t *testing.T) { blockcopyPivot(t, true) }, nil},
	{"TransientDisk", transientDisk, nil},
	{"SaveRestore", saveRestore, nil},
	{"DefinedManagedSave", definedManagedSave, nil},
}

func TestLive(t *testing.T) {
	if e2e == nil {
		t.Skip("e2e harness not set up")
	}
	for _, m := range liveModes {
		t.Run(m.name, func(t *testing.T) {
			e2e.useMode(t, m)
			for _, sc := range liveScenarios {
				if sc.only != nil && !sc.only(m) {
					continue
				}
				t.Run(sc.name, sc.run)
			}
			if !m.cooperative() {
				return
			}
			t.Run("Lifecycle", func(t *testing.T) {
				for _, sc := range modeScenarios {
					t.Run(sc.name, sc.run)
				}
			})
		})
	}
}

// mustVirsh runs a virsh command that has to succeed and returns its
// output; on failure it shows libvirt's error and the logs of domain.
func (f *fixture) mustVirsh(domain string, args ...string) string {
	f.t.Helper()
	out, err := f.host.virsh(3*time.Minute, args...)
	if err != nil {
		f.t.Errorf("virsh %s: %v (libvirt's error below)", strings.Join(args, " "), err)
		logBlock(f.t, "libvirt error", out)
		f.observe("when virsh " + args[0] + " failed")
		f.host.diagnose(f.t, domain)
		f.t.FailNow()
	}
	return out
}

// hookCmd runs the default host's hook binary as an admin of it would.
func hookCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e2e.host.hookCommand(ctx, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// grant runs `libvirt-dac-hook grant DOMAIN PATH...`, which must succeed.
func (f *fixture) grant(domain string, paths ...string) {
	f.t.Helper()
	f.hookMust(domain, append([]string{"grant", domain}, paths...)...)
}

// revoke runs `libvirt-dac-hook revoke DOMAIN PATH...`, which must succeed.
func (f *fixture) revoke(domain string, paths ...string) {
	f.t.Helper()
	f.hookMust(domain, append([]string{"revoke", domain}, paths...)...)
}

func (f *fixture) hookMust(domain string, args ...string) {
	f.t.Helper()
	if out, err := hookCmd(args...); err != nil {
		f.t.Errorf("%s %s: %v", hookPath, strings.Join(args, " "), err)
		logBlock(f.t, "output", out)
		f.observe("after the failed " + args[0])
		f.host.diagnose(f.t, domain)
		f.t.FailNow()
	}
}

// want checks that each of trs is owned by o now.
func (f *fixture) want(phase string, o owner, domain string, trs ...*tracked) {
	f.t.Helper()
	ok := true
	for _, tr := range trs {
		ok = f.checkOne(phase, tr, o) && ok
	}
	if !ok {
		f.observe(phase)
		f.host.diagnose(f.t, domain)
	}
}

// observe logs the owner and mode of every file in the fixture dir (domain
// XMLs aside) and of extra paths: what libvirt did, for the reader.
func (f *fixture) observe(phase string, extra ...string) {
	f.t.Helper()
	var paths []string
	_ = filepath.WalkDir(f.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".xml") {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	paths = append(paths, extra...)
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%-24s %-6s %v\n", strings.TrimPrefix(p, f.dir+"/"), f.h.ownerName(owner{int(st.Uid), int(st.Gid)}), modeBits(fi))
	}
	logBlock(f.t, fmt.Sprintf("observed [%s] %s", f.host.mode.name, phase), b.String())
}

// waitNoTarget waits until target is no longer among domain's disks:
// detach-disk may return before QEMU has let go of the device.
func (f *fixture) waitNoTarget(domain, target string) {
	f.t.Helper()
	var out string
	if !waitFor(30*time.Second, func() bool {
		var err error
		out, err = f.host.virsh(10*time.Second, "domblklist", domain)
		if err != nil {
			return false
		}
		for _, line := range strings.Split(out, "\n") {
			if fl := strings.Fields(line); len(fl) > 0 && fl[0] == target {
				return false
			}
		}
		return true
	}) {
		f.t.Fatalf("%s still has disk %s 30s after detach: %s", domain, target, out)
	}
}

// rawImage is a 0600 raw image owned by o, tracked with QEMU as its owner
// while the domain runs.
func (f *fixture) rawImage(name string, o owner) *tracked {
	f.t.Helper()
	return f.track(f.image(name, "raw", "8M", "", o, 0o600), f.h.qemu.owner())
}

// chain is a qcow2 overlay over a base, both 0600 and owned by o.
func (f *fixture) chain(prefix string, o owner) (base, top *tracked) {
	f.t.Helper()
	q := f.h.qemu.owner()
	b := f.image(prefix+"base.qcow2", "qcow2", "16M", "", o, 0o600)
	tp := f.image(prefix+"top.qcow2", "qcow2", "", b, o, 0o600)
	return f.track(b, q), f.track(tp, q)
}

// strict reports whether the host is in strict mode.
func (f *fixture) strict() bool { return !f.host.mode.cooperative() }
