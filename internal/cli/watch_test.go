package cli_test

import (
	"path/filepath"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// labelledFile is what the watcher records of p just before libvirt's
// label (a proven one): its identity and its owner now.
func labelledFile(t *testing.T, p string) inventory.File {
	t.Helper()
	h, err := owner.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, err := inventory.Identify(h, filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	f.Proven = true
	return f
}
