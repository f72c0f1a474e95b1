package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/reclaim"
)

type reclaimOut struct {
	Files []struct {
		Path   string                     `json:"path"`
		Action string                     `json:"action"`
		Reason string                     `json:"reason"`
		To     *struct{ UID, GID uint32 } `json:"to"`
	} `json:"files"`
	GaveBack int `json:"gave_back"`
}

func (r reclaimOut) find(p string) (string, string) {
	for _, f := range r.Files {
		if f.Path == p {
			return f.Action, f.Reason
		}
	}
	return "absent", ""
}

// TestReclaim: a pool left by libvirt's own driver. old.iso carries
// libvirt's remembered owner; user/base.qcow2 sits in a user's directory;
// running.raw is open by a (fake) running QEMU; held.raw is in the hook's
// journal; mine.raw is not QEMU's.
func TestReclaim(t *testing.T) {
	f := newFixture(t)
	pool := f.path("pool")
	f.write("pool/old.iso", "iso", qemuID)
	f.write("pool/user/base.qcow2", "base", qemuID)
	f.write("pool/running.raw", "run", qemuID)
	f.write("pool/held.raw", "held", imageUID)
	f.write("pool/mine.raw", "mine", 1000)
	if err := os.Chown(f.path("pool/user"), 1000, 100); err != nil {
		t.Fatal(err)
	}
	iso := f.path("pool/old.iso")
	if err := unix.Setxattr(iso, reclaim.XattrDAC, []byte("+0:+0"), 0); err != nil {
		t.Skipf("no trusted xattrs: %v", err)
	}
	for k, v := range map[string]string{reclaim.XattrRefDAC: "1", reclaim.XattrTimestamp: "x"} {
		if err := unix.Setxattr(iso, k, []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(iso, qemuID, qemuID); err != nil {
		t.Fatal(err)
	}
	f.writeState("an-earlier-boot", "pool/held.raw")
	proc := f.path("proc")
	if err := os.MkdirAll(filepath.Join(proc, "42", "fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/bin/qemu-system-x86_64", filepath.Join(proc, "42", "exe")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.path("pool/running.raw"), filepath.Join(proc, "42", "fd", "7")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(proc, "42"), qemuID, qemuID); err != nil {
		t.Fatal(err)
	}
	f.write("run/running.pid", "42", 0)
	defer setProcRoot(proc)()
	defer setRunDir(f.path("run"))()

	reclaimJSON := func(args ...string) (reclaimOut, result) {
		t.Helper()
		res := run(noRead{t}, append([]string{"reclaim", "--json"}, args...)...)
		var out reclaimOut
		if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
			t.Fatalf("reclaim --json: %v\n%s\nstderr %s", err, res.stdout, res.stderr)
		}
		return out, res
	}
	wantActions := map[string]string{
		"pool/old.iso":         reclaim.GiveBack,
		"pool/user/base.qcow2": reclaim.GiveBack,
		"pool/running.raw":     reclaim.Skip,
		"pool/held.raw":        reclaim.Skip,
		"pool/mine.raw":        "absent",
	}
	check := func(out reclaimOut) {
		t.Helper()
		for rel, want := range wantActions {
			if got, why := out.find(f.path(rel)); got != want {
				t.Errorf("%s: %s (%s), want %s", rel, got, why, want)
			}
		}
	}

	before := f.owners()
	stateBefore, _ := os.ReadFile(filepath.Join(f.state, "state.json"))
	out, res := reclaimJSON("--dry-run", pool)
	if res.code != cli.ExitOK {
		t.Fatalf("dry run exit %d: %s", res.code, res.stderr)
	}
	check(out)
	if _, why := out.find(f.path("pool/running.raw")); !strings.Contains(why, "open by QEMU pid 42") {
		t.Errorf("running.raw skipped because %q, want the QEMU pid", why)
	}
	f.checkOwners(before)
	if st, _ := os.ReadFile(filepath.Join(f.state, "state.json")); string(st) != string(stateBefore) {
		t.Errorf("dry run changed the journal")
	}

	out, res = reclaimJSON(pool)
	if res.code != cli.ExitOK || out.GaveBack != 2 {
		t.Fatalf("reclaim exit %d, gave back %d, want 0 and 2: %s", res.code, out.GaveBack, res.stderr)
	}
	check(out)
	for rel, want := range map[string]string{
		"pool/old.iso":         "0:0",
		"pool/user/base.qcow2": "0:0", // a user's directory is no evidence
		"pool/running.raw":     qemuOwner,
		"pool/held.raw":        qemuOwner,
		"pool/mine.raw":        "1000:1000",
	} {
		if got := ownerOf(t, f.path(rel)); got != want {
			t.Errorf("after reclaim %s is %s, want %s", rel, got, want)
		}
	}
	for _, x := range []string{reclaim.XattrDAC, reclaim.XattrRefDAC, reclaim.XattrTimestamp} {
		if _, err := unix.Getxattr(iso, x, nil); err == nil {
			t.Errorf("libvirt's %s left on old.iso", x)
		}
	}
	// The journal is as before: the give-backs were recorded and forgotten.
	if ents := f.stateEntries(); len(ents) != 1 || ents[0].Path != f.path("pool/held.raw") {
		t.Errorf("journal after reclaim: %+v", ents)
	}
	log, _ := os.ReadFile(f.logFile)
	for _, want := range []string{"msg=chown", "op=reclaim", "path=" + iso, "from=\"" + qemuOwner + "\"", "to=\"0:0\""} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// --owner: every file found goes to the owner given.
	f.write("pool/user/again.raw", "x", qemuID)
	out, res = reclaimJSON("--owner", "+7:+8", f.path("pool/user"))
	if res.code != cli.ExitOK || out.GaveBack != 1 || ownerOf(t, f.path("pool/user/again.raw")) != "7:8" {
		t.Errorf("--owner: exit %d, gave back %d, owner %s", res.code, out.GaveBack, ownerOf(t, f.path("pool/user/again.raw")))
	}

	// The table names every file and its reason.
	f.write("pool/table.raw", "x", qemuID)
	res = run(noRead{t}, "reclaim", "--dry-run", pool)
	if res.code != cli.ExitOK || !strings.Contains(res.stdout, "give back  file") || !strings.Contains(res.stdout, "owner of its directory") || !strings.Contains(res.stdout, "would give back 1") {
		t.Errorf("reclaim table (exit %d):\n%s", res.code, res.stdout)
	}
}

func TestReclaimUsage(t *testing.T) {
	newFixture(t)
	for _, args := range [][]string{{"reclaim", "relative/path"}, {"reclaim", "--owner", "nobody-such:x"}} {
		if res := run(noRead{t}, args...); res.code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, res.code, cli.ExitUsage, res.stderr)
		}
	}
}

// TestReclaimNeverGuessesAUser: root's 0600 file, left to QEMU without a
// libvirt label in a directory a user owns, goes to root:root, not to that
// user, who still cannot read it; the output says whose directory it is
// and how to give it to them.
func TestReclaimNeverGuessesAUser(t *testing.T) {
	f := newFixture(t)
	f.write("pool/alice/secret.img", "root's secret", qemuID)
	p := f.path("pool/alice/secret.img")
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f.path("pool/alice"), 1000, 100); err != nil {
		t.Fatal(err)
	}
	res := run(noRead{t}, "reclaim", f.path("pool"))
	if res.code != cli.ExitOK {
		t.Fatalf("reclaim = %+v", res)
	}
	if got := ownerOf(t, p); got != "0:0" {
		t.Errorf("after reclaim %s is %s, want 0:0", p, got)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil || st.Mode&0o7777 != 0o600 {
		t.Errorf("mode after reclaim = %o (%v), want 0600", st.Mode&0o7777, err)
	}
	if err := exec.Command("setpriv", "--reuid=1000", "--regid=100", "--clear-groups", "cat", p).Run(); err == nil {
		t.Errorf("uid 1000 can read %s after reclaim", p)
	}
	if !strings.Contains(res.stdout, "1000:100") || !strings.Contains(res.stdout, "--owner +1000:+100") {
		t.Errorf("reclaim output does not say whose directory it is and how to give it to them:\n%s", res.stdout)
	}
}
