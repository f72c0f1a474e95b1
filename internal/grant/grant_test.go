package grant

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

func TestResource(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.qcow2")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, format string
		kind               domain.Kind
		probe              bool
		err                string
	}{
		{name: "raw image", path: img, format: "raw", kind: domain.KindDisk},
		{name: "qcow2 image has its chain probed", path: img, format: "qcow2", kind: domain.KindDisk, probe: true},
		{name: "character device", path: "/dev/null", format: "raw", kind: domain.KindHostdevChar},
		{name: "directory", path: dir, format: "raw", err: "grant hands over disk images"},
		{name: "missing", path: filepath.Join(dir, "none"), format: "raw", err: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := resource(tc.path, tc.format)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("resource(%s) = %v, want an error with %q", tc.path, err, tc.err)
				}
				return
			}
			if err != nil || r.Kind != tc.kind || r.ProbeBacking != tc.probe || r.Path != tc.path || r.From != "grant" {
				t.Errorf("resource(%s, %s) = %+v, %v, want kind %s, probe %v", tc.path, tc.format, r, err, tc.kind, tc.probe)
			}
		})
	}
}
