package reclaim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

func ino(t *testing.T, p string) owner.ID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return owner.ID{Dev: st.Dev, Ino: st.Ino}
}

// TestAddProcesses reads a fake /proc and run directory: only a process a
// pid file of libvirt's names, running as QEMU's user, is QEMU.
func TestAddProcesses(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	proc := filepath.Join(dir, "proc")
	tree(t, dir, map[string]int{"img/used.raw": qemuUID, "img/other.raw": qemuUID, "img/byuid.raw": qemuUID, "img/stale.raw": qemuUID, "img/free.raw": qemuUID})
	mk := func(pid, exe, open string, uid int, cmdline string) {
		p := filepath.Join(proc, pid)
		if err := os.MkdirAll(filepath.Join(p, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(exe, filepath.Join(p, "exe")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(dir, open), filepath.Join(p, "fd", "3")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "cmdline"), []byte(cmdline), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	// libvirt's QEMU of vm1; a user's program named like QEMU; a process
	// of QEMU's user that no pid file of libvirt's names; a pid file that
	// names a process of another user (stale, its pid reused).
	mk("10", "/usr/bin/qemu-system-x86_64", "img/used.raw", qemuUID, "qemu-system-x86_64\x00-name\x00guest=vm1,debug-threads=on\x00")
	mk("20", "/home/u/qemu-system-x86_64", "img/other.raw", 1000, "qemu-system-x86_64\x00")
	mk("30", "/usr/libexec/helper", "img/byuid.raw", qemuUID, "helper\x00")
	mk("40", "/usr/bin/sleep", "img/stale.raw", 1000, "sleep\x00")
	run := t.TempDir()
	for name, pid := range map[string]string{"vm1": "10", "gone": "40"} {
		if err := os.WriteFile(filepath.Join(run, name+".pid"), []byte(pid), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	u := NewInUse()
	if err := u.AddProcesses(run, proc, qemuUID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		used bool
		why  string
	}{
		{"img/used.raw", true, "open by QEMU pid 10 (domain vm1)"},
		{"img/byuid.raw", false, ""},
		{"img/other.raw", false, ""},
		{"img/stale.raw", false, ""},
		{"img/free.raw", false, ""},
	} {
		why, used := u.Of(ino(t, filepath.Join(dir, tc.file)))
		if used != tc.used || why != tc.why {
			t.Errorf("%s: used %v (%q), want %v (%q)", tc.file, used, why, tc.used, tc.why)
		}
	}
}

func TestAddJournal(t *testing.T) {
	st := &journal.State{Version: journal.FormatVersion}
	st.Add(&journal.Entry{Path: "/a", Dev: 1, Ino: 2, Holders: []journal.Holder{{Domain: "vm1"}, {Domain: "vm2"}}})
	st.Add(&journal.Entry{Path: "/b", Dev: 1, Ino: 3})
	u := NewInUse()
	u.AddJournal(st)
	if why, ok := u.Of(owner.ID{Dev: 1, Ino: 2}); !ok || !strings.Contains(why, "held by vm1, vm2") {
		t.Errorf("held entry: %v %q", ok, why)
	}
	if why, ok := u.Of(owner.ID{Dev: 1, Ino: 3}); !ok || !strings.Contains(why, "pending") {
		t.Errorf("pending entry: %v %q", ok, why)
	}
	if _, ok := u.Of(owner.ID{Dev: 1, Ino: 4}); ok {
		t.Errorf("an inode the journal does not record is in use")
	}
	if why, ok := u.OfFile(File{Path: "/b", Dev: 7, Ino: 8}); !ok || !strings.Contains(why, "pending") {
		t.Errorf("a recorded path on another device number: %v %q", ok, why)
	}
}
