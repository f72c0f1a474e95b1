package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/version"
)

type doctorReport struct {
	Findings []struct {
		Check, Status, Detail, Fix string
	} `json:"findings"`
	Resources []struct {
		Path   string `json:"path"`
		Status string `json:"status"`
		Read   bool   `json:"qemu_can_read"`
		Write  bool   `json:"qemu_can_write"`
		Detail string `json:"detail"`
	} `json:"resources"`
	Problems int    `json:"problems"`
	Warnings int    `json:"warnings"`
	Mode     string `json:"mode"`
}

func (r doctorReport) finding(check string) string {
	for _, f := range r.Findings {
		if f.Check == check {
			return f.Status
		}
	}
	return "absent"
}

func (r doctorReport) resource(path string) (string, string) {
	for _, v := range r.Resources {
		if v.Path == path {
			return v.Status, v.Detail
		}
	}
	return "absent", ""
}

func TestDoctor(t *testing.T) {
	f := newFixture(t)
	hook := filepath.Join(f.root, "hooks", "qemu")
	// A state dir QEMU cannot search, and one it can.
	closed := filepath.Join(f.root, "lib-qemu")
	open := filepath.Join(f.root, "run-qemu")
	for _, d := range []struct {
		p    string
		mode os.FileMode
	}{{filepath.Dir(hook), 0o755}, {closed, 0o700}, {open, 0o755}} {
		if err := os.MkdirAll(d.p, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	defer setDoctorPaths(hook, []string{closed, open})()
	f.writeQEMUConf("user = \"+64055\"\ngroup = \"+64055\"\ndynamic_ownership = 0\n")
	// An image its owner cannot read: after the chown QEMU cannot either.
	f.write("img/noread.raw", "", imageUID)
	if err := os.Chmod(filepath.Join(f.root, "img/noread.raw"), 0o200); err != nil {
		t.Fatal(err)
	}
	xml := f.domainXML("vm1", `<disk type='file' device='disk'><driver type='raw'/><source file='$ROOT/img/disk.raw'/><target dev='vda'/></disk>
<disk type='file' device='disk'><driver type='raw'/><source file='$ROOT/img/noread.raw'/><target dev='vdb'/></disk>`)

	doctor := func(args ...string) (doctorReport, result) {
		t.Helper()
		res := run(strings.NewReader(xml), append([]string{"doctor", "--json"}, args...)...)
		var rep doctorReport
		if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
			t.Fatalf("doctor --json output is not JSON: %v\n%s\nstderr: %s", err, res.stdout, res.stderr)
		}
		return rep, res
	}

	rep, res := doctor("-")
	if res.code != cli.ExitFailed || rep.Problems == 0 {
		t.Errorf("doctor found %d problems, exit %d; want problems and exit %d", rep.Problems, res.code, cli.ExitFailed)
	}
	if got := rep.finding("hook installed"); got != "problem" {
		t.Errorf("hook installed = %s with no hook at %s, want problem", got, hook)
	}
	if got := rep.finding("mode"); got != "ok" || rep.Mode != "strict" {
		t.Errorf("mode = %s (%s) with dynamic_ownership = 0, want ok (strict)", got, rep.Mode)
	}
	if got := rep.finding("state dir " + closed); got != "problem" {
		t.Errorf("state dir %s (0700 root) = %s, want problem", closed, got)
	}
	if got := rep.finding("state dir " + open); got != "ok" {
		t.Errorf("state dir %s (0755 root) = %s, want ok", open, got)
	}
	if st, _ := rep.resource(filepath.Join(f.root, "img/disk.raw")); st != "ok" {
		t.Errorf("img/disk.raw = %s, want ok", st)
	}
	if st, detail := rep.resource(filepath.Join(f.root, "img/noread.raw")); st != "problem" || !strings.Contains(detail, "cannot read") {
		t.Errorf("img/noread.raw = %s (%s), want a problem saying QEMU cannot read it", st, detail)
	}

	// --fix gives the state dir to QEMU's user; our marker makes the hook ours.
	if err := os.WriteFile(hook, []byte("#!/bin/true\n"+version.Marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rep, _ = doctor("--fix", "-")
	if got := rep.finding("state dir " + closed); got != "ok" {
		t.Errorf("after --fix, state dir %s = %s, want ok", closed, got)
	}
	if got := rep.finding("hook installed"); got != "ok" {
		t.Errorf("hook installed = %s with our binary there, want ok", got)
	}
	if got := ownerOf(t, closed); got != qemuOwner {
		t.Errorf("after --fix %s is owned by %s, want %s", closed, got, qemuOwner)
	}
	log, _ := os.ReadFile(f.logFile)
	if want := "msg=chown domain= from=\"0:0\" op=doctor-fix path=" + closed + " to=\"" + qemuOwner + "\""; !strings.Contains(string(log), want) {
		t.Errorf("--fix logged no change line %q:\n%s", want, log)
	}
	// Doctor changes nothing else: the images keep their owners.
	if got := ownerOf(t, filepath.Join(f.root, "img/disk.raw")); got != "1000:1000" {
		t.Errorf("doctor changed img/disk.raw to %s", got)
	}
}

// TestDoctorVerdict: the last line counts what the lines above say, and
// the exit status follows the problems, not the warnings.
func TestDoctorVerdict(t *testing.T) {
	f := newFixture(t)
	hook := filepath.Join(f.root, "hooks", "qemu")
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hook, []byte("#!/bin/true\n"+version.Marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Owned by another non-root user: a warning. Absent: nothing.
	other := filepath.Join(f.root, "other-qemu")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	defer setDoctorPaths(hook, []string{other, filepath.Join(f.root, "absent")})()
	for _, tc := range []struct {
		name, conf, mode string
	}{
		{"cooperative", "dynamic_ownership = 1\nremember_owner = 1\n", "cooperative"},
		{"cooperative by default", "", "cooperative"},
		{"strict", "dynamic_ownership = 0\n", "strict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.writeQEMUConf("user = \"+64055\"\ngroup = \"+64055\"\n" + tc.conf)
			res := run(noRead{t}, "doctor", "--json")
			var rep doctorReport
			if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Mode != tc.mode || rep.finding("mode") != "ok" {
				t.Errorf("mode %q (%s), want %q, ok", rep.Mode, rep.finding("mode"), tc.mode)
			}
			text := run(noRead{t}, "doctor")
			lines := strings.Split(strings.TrimSpace(text.stdout), "\n")
			last := lines[len(lines)-1]
			warns, problems := strings.Count(text.stdout, "[WARN]"), strings.Count(text.stdout, "[PROBLEM]")
			if warns != rep.Warnings || problems != rep.Problems {
				t.Errorf("printed %d warnings, %d problems; JSON says %d, %d", warns, problems, rep.Warnings, rep.Problems)
			}
			if warns == 0 {
				t.Errorf("no warning printed for %s owned by 1234:\n%s", other, text.stdout)
			}
			wantLast := fmt.Sprintf("%d problem", problems)
			if !strings.HasPrefix(last, wantLast) || !strings.Contains(last, fmt.Sprintf("%d warning", warns)) {
				t.Errorf("last line %q does not count %d problems and %d warnings", last, problems, warns)
			}
			wantCode := cli.ExitOK
			if problems > 0 {
				wantCode = cli.ExitFailed
			}
			if text.code != wantCode {
				t.Errorf("exit %d with %d problems, want %d", text.code, problems, wantCode)
			}
			if strings.Contains(text.stdout, "no problems found") {
				t.Errorf("still says no problems found:\n%s", text.stdout)
			}
		})
	}
}
