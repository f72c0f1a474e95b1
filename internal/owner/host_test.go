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
			if got := fsPath(Mount{Root: tc.root, Point: tc.point}, tc.path); got != tc.want {
				t.Errorf("fsPath(%s on %s, %s) = %s, want %s", tc.root, tc.point, tc.path, got, tc.want)
			}
		})
	}
}
