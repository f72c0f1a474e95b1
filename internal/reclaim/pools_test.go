package reclaim

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDefaultRoots(t *testing.T) {
	dir := t.TempDir()
	for name, xml := range map[string]string{
		"default.xml": `<pool type='dir'><name>default</name><target><path>/var/lib/libvirt/images</path></target></pool>`,
		"big.xml":     `<pool type='dir'><name>big</name><target><path>/srv/vm/</path></target></pool>`,
		"nfs.xml":     `<pool type='netfs'><name>nfs</name><source><host name='h'/><dir path='/x'/></source><target><path>/mnt/nfs</path></target></pool>`,
		"lvm.xml":     `<pool type='logical'><name>vg</name><target><path>/dev/vg</path></target></pool>`,
		"rel.xml":     `<pool type='dir'><name>rel</name><target><path>images</path></target></pool>`,
		"bad.xml":     `<pool`,
		"notxml.txt":  `ignored`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(xml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	roots, notes, err := DefaultRoots(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/var/lib/libvirt/images", "/srv/vm", "/mnt/nfs"}
	if !slices.Equal(roots, want) {
		t.Errorf("DefaultRoots = %v, want %v", roots, want)
	}
	joined := strings.Join(notes, "\n")
	for _, n := range []string{"pool vg (logical): not scanned", "pool rel: target \"images\" is not absolute", "bad.xml"} {
		if !strings.Contains(joined, n) {
			t.Errorf("notes lack %q:\n%s", n, joined)
		}
	}
}
