package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGroupOthers(t *testing.T) {
	dir := t.TempDir()
	passwd := "root:x:0:0::/root:/bin/sh\nlibvirt-qemu:x:64055:107::/var/lib/libvirt:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\nkvmuser:x:1001:36::/:/bin/sh\n"
	group := "root:x:0:\nkvm:x:107:libvirt-qemu,alice\nlibvirt-qemu:x:64055:libvirt-qemu\nlonely:x:500:\nprimary:x:36:\n"
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "group"), []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	old := groupFiles
	groupFiles.group, groupFiles.passwd = filepath.Join(dir, "group"), filepath.Join(dir, "passwd")
	defer func() { groupFiles = old }()
	reset := func() {
		membersMu.Lock()
		membersCache = map[[2]uint32]bool{}
		membersMu.Unlock()
	}
	reset()
	defer reset()
	for _, tc := range []struct {
		name     string
		gid, uid uint32
		want     bool
	}{
		{"a listed member besides QEMU", 107, 64055, true},
		{"only QEMU itself", 64055, 64055, false},
		{"nobody", 500, 64055, false},
		{"someone's primary group", 36, 64055, true},
		{"unknown group", 4242, 64055, false},
	} {
		if got := GroupOthers(tc.gid, tc.uid); got != tc.want {
			t.Errorf("GroupOthers(%d, %d) [%s] = %v, want %v", tc.gid, tc.uid, tc.name, got, tc.want)
		}
	}
	groupFiles.group = filepath.Join(dir, "missing")
	reset()
	if !GroupOthers(500, 64055) {
		t.Error("GroupOthers without a group file = false, want the careful true")
	}
}
