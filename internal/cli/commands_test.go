package cli_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/google/go-cmp/cmp"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/version"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestHelp(t *testing.T) {
	// Help must work without any usable configuration.
	t.Setenv("LIBVIRT_DAC_HOOK_CONFIG", "/nonexistent/dir/hook.conf")
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"-help"}, {"help"},
		{"plan", "--help"}, {"plan", "-h"},
		{"status", "--help"},
		{"restore", "--help"},
		{"doctor", "--help"},
		{"version", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			res := run(noRead{t}, args...)
			if res.code != cli.ExitOK {
				t.Errorf("exit %d, want 0 (stderr %q)", res.code, res.stderr)
			}
			if res.stderr != "" {
				t.Errorf("help wrote to stderr: %q", res.stderr)
			}
			if !strings.Contains(res.stdout, "Usage") {
				t.Errorf("stdout has no usage: %q", res.stdout)
			}
			// Every help text documents the exit codes.
			for _, code := range []string{"0  done", "2  wrong arguments", "3  unusable domain XML", "4  unreadable or invalid", "5  state lock"} {
				if !strings.Contains(res.stdout, code) {
					t.Errorf("help does not document exit status %q", code)
				}
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	f := newFixture(t)
	for _, args := range [][]string{
		{"plan", "--frobnicate"},
		{"plan", "--op", "start", "-"},
		{"plan", "a.xml", "b.xml"},
		{"status", "extra"},
		{"restore"},
		{"restore", "--all", "--stale"},
		{"restore", "--domain"},
		{"version", "--json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			res := run(noRead{t}, args...)
			if res.code != cli.ExitUsage {
				t.Errorf("exit %d, want %d (stderr %q)", res.code, cli.ExitUsage, res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout %q, want nothing", res.stdout)
			}
			if res.stderr == "" {
				t.Errorf("nothing on stderr")
			}
		})
	}
	f.checkNoEntries()
}

func TestVersion(t *testing.T) {
	t.Setenv("LIBVIRT_DAC_HOOK_CONFIG", "/nonexistent/dir/hook.conf")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"version"}, "libvirt-dac-hook " + version.Version + "\n"},
		{[]string{"--version"}, "libvirt-dac-hook " + version.Version + "\n"},
		{[]string{"version", "--marker"}, version.Marker + "\n"},
	} {
		res := run(noRead{t}, tt.args...)
		if res.code != cli.ExitOK || res.stdout != tt.want || res.stderr != "" {
			t.Errorf("Main(%q) = exit %d, stdout %q, stderr %q; want 0, %q, nothing", tt.args, res.code, res.stdout, res.stderr, tt.want)
		}
	}
}

// planDevices is the fixture domain of the plan tests: every action a
// plan can show.
const planDevices = `    <kernel>$ROOT/boot/vmlinuz</kernel>
` + standardDisks + `
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$ROOT/img/mine.raw'/><target dev='vdc' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$ROOT/etc/secret'/><target dev='vdd' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$ROOT/img/disk.raw'><seclabel model='dac' relabel='no'/></source><target dev='vde' bus='virtio'/><shareable/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='$ROOT/img/missing.iso' startupPolicy='optional'/><target dev='hdc' bus='ide'/><readonly/></disk>
    <serial type='file'><source path='$ROOT/img/serial.log'/><target port='0'/></serial>`

// planXML puts the plan fixture's domain in a file and returns its path.
func planXML(t *testing.T, f *fixture) string {
	t.Helper()
	// <kernel> belongs in <os>; domainXML puts devices in <devices>.
	xml := strings.Replace(f.domainXML("golden", strings.Replace(planDevices, "    <kernel>$ROOT/boot/vmlinuz</kernel>\n", "", 1)),
		"<type arch='x86_64' machine='pc'>hvm</type>", "<type arch='x86_64' machine='pc'>hvm</type><kernel>"+f.path("boot/vmlinuz")+"</kernel>", 1)
	p := filepath.Join(f.root, "golden.xml")
	if err := os.WriteFile(p, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanJSON(t *testing.T) {
	f := newFixture(t)
	xmlFile := planXML(t, f)
	before := f.owners()
	res := run(noRead{t}, "plan", "--json", xmlFile)
	if res.code != cli.ExitOK {
		t.Fatalf("plan --json = exit %d, stderr %q", res.code, res.stderr)
	}
	f.checkOwners(before)
	f.checkNoEntries()

	var p struct {
		Domain    string `json:"domain"`
		Target    *struct{ UID, GID *uint32 }
		Resources []map[string]json.RawMessage `json:"resources"`
	}
	dec := json.NewDecoder(strings.NewReader(res.stdout))
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("plan --json is not JSON: %v\n%s", err, res.stdout)
	}
	if dec.More() {
		t.Errorf("plan --json printed more than one JSON value")
	}
	if p.Domain != "golden" {
		t.Errorf("domain = %q, want golden", p.Domain)
	}
	if p.Target == nil || p.Target.UID == nil || *p.Target.UID != qemuID {
		t.Errorf("target = %+v, want uid %d", p.Target, qemuID)
	}
	if len(p.Resources) == 0 {
		t.Fatalf("no resources in %s", res.stdout)
	}
	actions := make(map[string]bool)
	for i, r := range p.Resources {
		for _, k := range []string{"path", "kind", "from", "action"} {
			if _, ok := r[k]; !ok {
				t.Errorf("resource %d has no %q: %s", i, k, res.stdout)
			}
		}
		var action string
		if err := json.Unmarshal(r["action"], &action); err != nil {
			t.Errorf("resource %d has action %s, want a string: %v", i, r["action"], err)
		}
		actions[action] = true
		if action == "chown" || action == "keep" {
			for _, k := range []string{"current", "target"} {
				var o struct{ UID, GID *uint32 }
				if err := json.Unmarshal(r[k], &o); err != nil || o.UID == nil || o.GID == nil {
					t.Errorf("resource %d (%s) has %s = %s, want {uid, gid}", i, action, k, r[k])
				}
			}
		}
	}
	for _, a := range []string{"chown", "keep", "skip", "error"} {
		if !actions[a] {
			t.Errorf("no %q resource in the fixture plan", a)
		}
	}
}

// TestPlanGolden compares `plan` and `plan --json` (from a file and from
// stdin) with golden files. The temp root is replaced by $ROOT and the text
// table re-aligned (retab), so the files do not depend on where the test
// ran.
func TestPlanGolden(t *testing.T) {
	f := newFixture(t)
	xmlFile := planXML(t, f)
	for _, tt := range []struct {
		golden string
		args   []string
	}{
		{"plan.golden", []string{"plan", xmlFile}},
		{"plan-json.golden", []string{"plan", "--json", xmlFile}},
		{"plan.golden", []string{"plan", "-"}},
		{"plan-json.golden", []string{"plan", "--json"}},
	} {
		t.Run(strings.Join(tt.args[:len(tt.args)-1], " ")+" "+filepath.Base(tt.args[len(tt.args)-1]), func(t *testing.T) {
			xml, err := os.ReadFile(xmlFile)
			if err != nil {
				t.Fatal(err)
			}
			res := run(bytes.NewReader(xml), tt.args...)
			if res.code != cli.ExitOK || res.stderr != "" {
				t.Fatalf("%q = exit %d, stderr %q", tt.args, res.code, res.stderr)
			}
			got := []byte(strings.ReplaceAll(res.stdout, f.root, "$ROOT"))
			if !strings.HasSuffix(tt.golden, "json.golden") {
				got = retab(t, got)
			}
			golden := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%q differs from %s (-want +got):\n%s", tt.args, golden, diff)
			}
		})
	}
}

// cellSep separates the cells of a tabwriter table (padding 2).
var cellSep = regexp.MustCompile(` {2,}`)

// retab re-aligns the table of `plan` output after the temp root has been
// replaced, as if the tree had lived at $ROOT: the columns were padded for
// the real, longer paths. Cells never contain two spaces in a row.
func retab(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tabwriter.NewWriter(&out, 0, 4, 2, ' ', 0)
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		// Trailing padding stays: it marks an empty last cell.
		body := strings.TrimSuffix(line, "\n")
		if strings.Contains(body, "  ") {
			line = strings.Join(cellSep.Split(body, -1), "\t") + "\n"
		}
		if _, err := tw.Write([]byte(line)); err != nil {
			t.Fatalf("retab: %v", err)
		}
	}
	if err := tw.Flush(); err != nil {
		t.Fatalf("retab: %v", err)
	}
	return out.Bytes()
}

// TestPlanReleaseShowsHeld checks `plan --op release` and `status` after a
// real prepare: both read the journal, neither changes anything.
func TestPlanReleaseAndStatus(t *testing.T) {
	f := newFixture(t)
	before := f.owners()
	xml := f.domainXML("vm1", standardDisks)
	if res := run(strings.NewReader(xml), "vm1", "prepare", "begin", "-"); res.code != 0 {
		t.Fatalf("prepare: %+v", res)
	}
	held := f.owners()

	res := run(noRead{t}, "status", "--json")
	if res.code != cli.ExitOK {
		t.Fatalf("status --json = exit %d, stderr %q", res.code, res.stderr)
	}
	var st struct {
		StateDir string `json:"state_dir"`
		Entries  []struct {
			Path    string `json:"path"`
			UID     uint32 `json:"uid"`
			Stale   bool   `json:"stale"`
			Holders []struct {
				Domain string `json:"domain"`
			} `json:"holders"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, res.stdout)
	}
	if st.StateDir != f.state || len(st.Entries) != 3 {
		t.Errorf("status --json = %s, want 3 entries in %s", res.stdout, f.state)
	}
	for _, e := range st.Entries {
		if e.Stale || len(e.Holders) != 1 || e.Holders[0].Domain != "vm1" {
			t.Errorf("entry %s: stale %v holders %+v, want held by vm1", f.rel(e.Path), e.Stale, e.Holders)
		}
	}

	// The XML's name is what --op release looks up.
	res = run(strings.NewReader(xml), "plan", "--op", "release", "--json", "-")
	if res.code != cli.ExitOK {
		t.Fatalf("plan --op release = exit %d, stderr %q", res.code, res.stderr)
	}
	var rel struct {
		Domain    string `json:"domain"`
		Resources []struct {
			Path   string `json:"path"`
			Action string `json:"action"`
			Target struct{ UID, GID uint32 }
		} `json:"resources"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rel); err != nil {
		t.Fatalf("plan --op release --json: %v\n%s", err, res.stdout)
	}
	if rel.Domain != "vm1" || len(rel.Resources) != 3 {
		t.Errorf("plan --op release = %s, want 3 resources of vm1", res.stdout)
	}
	for _, r := range rel.Resources {
		want := before[r.Path]
		if got := ownerString(r.Target.UID, r.Target.GID); r.Action != "chown" || got != want {
			t.Errorf("release of %s: %s to %s, want chown to %s", f.rel(r.Path), r.Action, got, want)
		}
	}
	f.checkOwners(held)

	if res := run(noRead{t}, "vm1", "release", "end", "-"); res.code != 0 {
		t.Fatalf("release: %+v", res)
	}
	f.checkOwners(before)
	res = run(noRead{t}, "status")
	if res.code != cli.ExitOK || !strings.HasPrefix(res.stdout, "nothing held") {
		t.Errorf("status after release = exit %d, %q", res.code, res.stdout)
	}
}

func ownerString(uid, gid uint32) string { return fmt.Sprintf("%d:%d", uid, gid) }

// TestPlanAs: plan works on a machine without qemu.conf's accounts when
// told who QEMU runs as, and says how when it is not told.
func TestPlanAs(t *testing.T) {
	f := newFixture(t)
	f.writeQEMUConf("user = \"no-such-user-here\"\ngroup = \"no-such-group-here\"\n")
	xml := f.domainXML("vm1", standardDisks)
	res := run(strings.NewReader(xml), "plan", "-")
	if res.code != cli.ExitConfig || !strings.Contains(res.stderr, "--as") {
		t.Errorf("plan with unknown qemu.conf accounts = %+v, want exit %d and a hint about --as", res, cli.ExitConfig)
	}
	res = run(strings.NewReader(xml), "plan", "--json", "--as", "+4242:+4243", "-")
	if res.code != cli.ExitOK || !strings.Contains(res.stdout, `"uid": 4242`) || !strings.Contains(res.stdout, `"gid": 4243`) {
		t.Errorf("plan --as +4242:+4243 = %+v, want the plan with that target", res)
	}
}
