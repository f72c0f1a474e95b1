package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootUnit(t *testing.T) {
	root := t.TempDir()
	old := systemdRoot
	systemdRoot = root
	defer func() { systemdRoot = old }()
	mk := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Each case adds to the tree the one before left.
	for _, tc := range []struct {
		name   string
		setup  func()
		status string
		detail string
	}{
		{"no systemd", func() {}, StatusOK, "systemd is not running"},
		{"not installed", func() { mk("run/systemd/system/.keep") }, StatusWarn, "not installed"},
		{"not enabled", func() { mk("usr/lib/systemd/system/" + bootUnit) }, StatusWarn, "not enabled"},
		{"enabled", func() { mk("etc/systemd/system/libvirtd.service.wants/" + bootUnit) }, StatusOK, "wanted by libvirtd.service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			rep := &Report{}
			checkBootUnit(rep)
			if len(rep.Findings) != 1 {
				t.Fatalf("checkBootUnit = %+v, want one finding", rep.Findings)
			}
			f := rep.Findings[0]
			if f.Check != "boot unit" || f.Status != tc.status || !strings.Contains(f.Detail, tc.detail) {
				t.Errorf("checkBootUnit = %s %s (%s), want %s with %q", f.Check, f.Status, f.Detail, tc.status, tc.detail)
			}
		})
	}
}
