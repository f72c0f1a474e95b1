package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
)

func TestDoctorBootUnit(t *testing.T) {
	f := newFixture(t)
	defer cli.SetDoctorPaths(f.path("hooks/qemu"), nil)()
	root := f.path("sysroot")
	defer cli.SetSystemdRoot(root)()
	const unit = "libvirt-dac-hook-boot.service"
	mk := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		setup  func()
		status string
		detail string
	}{
		{"no systemd", func() {}, "ok", "systemd is not running"},
		{"not installed", func() { mk("run/systemd/system/.keep") }, "warn", "not installed"},
		{"not enabled", func() { mk("usr/lib/systemd/system/" + unit) }, "warn", "not enabled"},
		{"enabled", func() { mk("etc/systemd/system/libvirtd.service.wants/" + unit) }, "ok", "wanted by libvirtd.service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			res := run(noRead{t}, "doctor", "--json")
			var rep struct {
				Findings []struct{ Check, Status, Detail string } `json:"findings"`
			}
			if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
				t.Fatalf("%v: %s", err, res.stdout)
			}
			got := false
			for _, fd := range rep.Findings {
				if fd.Check == "boot unit" {
					got = true
					if fd.Status != tc.status || !strings.Contains(fd.Detail, tc.detail) {
						t.Errorf("boot unit = %s (%s), want %s with %q", fd.Status, fd.Detail, tc.status, tc.detail)
					}
				}
			}
			if !got {
				t.Errorf("no boot unit finding in %s", res.stdout)
			}
		})
	}
}
