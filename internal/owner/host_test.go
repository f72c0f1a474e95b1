package owner

import "testing"

func TestFsPath(t *testing.T) {
	tests := []struct {
		name        string
		root, point string
		path, want  string
	}{
		{"root filesystem", "/", "/", "/etc/shadow", "/etc/shadow"},
		{"bind of a directory", "/etc", "/srv/img/bases", "/srv/img/bases/shadow", "/etc/shadow"},
		{"bind of a file", "/etc/shadow", "/srv/img/disk.raw", "/srv/img/disk.raw", "/etc/shadow"},
		{"separate filesystem", "/", "/boot", "/boot/vmlinuz", "/vmlinuz"},
		{"subvolume", "/@home", "/home", "/home/alice/x", "/@home/alice/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fsPath(mountEntry{root: tc.root, point: tc.point}, tc.path); got != tc.want {
				t.Errorf("fsPath(%s on %s, %s) = %s, want %s", tc.root, tc.point, tc.path, got, tc.want)
			}
		})
	}
}

func TestParseMountEntry(t *testing.T) {
	e, ok := parseMountEntry(`36 35 98:0 /mnt\0401 /srv/a\040b rw,noatime master:1 - ext3 /dev/root rw`)
	if !ok || e.id != 36 || e.root != "/mnt 1" || e.point != "/srv/a b" || e.source != "/dev/root" {
		t.Errorf("parseMountEntry = %+v, %v", e, ok)
	}
	if _, ok := parseMountEntry("x 35 98:0 / / rw - ext4 /dev/root rw"); ok {
		t.Error("parseMountEntry accepted a non-numeric mount id")
	}
}
