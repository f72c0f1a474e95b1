package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

// writeState writes the fixture's journal: one entry per path, held by
// domain vm1 on boot, recording imageUID as the original owner, with the
// file given to QEMU's user as a prepare would have done.
func (f *fixture) writeState(boot string, rels ...string) {
	f.t.Helper()
	if err := os.MkdirAll(f.state, 0o700); err != nil {
		f.t.Fatal(err)
	}
	st := &journal.State{Version: journal.FormatVersion}
	for _, rel := range rels {
		p := f.path(rel)
		if err := os.Chown(p, qemuID, qemuID); err != nil {
			f.t.Fatal(err)
		}
		var s unix.Stat_t
		if err := unix.Stat(p, &s); err != nil {
			f.t.Fatal(err)
		}
		st.Add(&journal.Entry{Path: p, Dev: s.Dev, Ino: s.Ino, UID: imageUID, GID: imageUID, TargetUID: qemuID, TargetGID: qemuID,
			Holders: []journal.Holder{{Domain: "vm1", BootID: boot, Kind: "disk"}}, Created: boot})
	}
	b, err := st.Encode()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.state, "state.json"), b, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func TestBoot(t *testing.T) {
	boot, err := journal.CurrentBootID()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("records of an earlier boot are given back", func(t *testing.T) {
		f := newFixture(t)
		f.writeState("an-earlier-boot", "img/disk.raw", "img/base.raw")
		res := run(noRead{t}, "boot")
		if res.code != cli.ExitOK {
			t.Fatalf("boot exit %d, stderr %q", res.code, res.stderr)
		}
		for _, rel := range []string{"img/disk.raw", "img/base.raw"} {
			if got := ownerOf(t, f.path(rel)); got != "1000:1000" {
				t.Errorf("after boot %s is %s, want 1000:1000", rel, got)
			}
		}
		f.checkNoEntries()
		log, _ := os.ReadFile(f.logFile)
		if !strings.Contains(string(log), "boot: gave back stale records") || !strings.Contains(string(log), "given_back=2") {
			t.Errorf("log has no summary line saying 2 were given back:\n%s", log)
		}
	})
	t.Run("records of this boot are left alone, nothing written", func(t *testing.T) {
		f := newFixture(t)
		f.writeState(boot, "img/disk.raw")
		before, _ := os.ReadFile(filepath.Join(f.state, "state.json"))
		res := run(noRead{t}, "boot")
		if res.code != cli.ExitOK {
			t.Fatalf("boot exit %d, stderr %q", res.code, res.stderr)
		}
		after, _ := os.ReadFile(filepath.Join(f.state, "state.json"))
		if string(before) != string(after) {
			t.Errorf("state changed:\n%s\nwant\n%s", after, before)
		}
		if got := ownerOf(t, f.path("img/disk.raw")); got != qemuOwner {
			t.Errorf("a file held on this boot went to %s", got)
		}
		ents, _ := os.ReadDir(f.state)
		if len(ents) != 1 {
			t.Errorf("state dir holds %d entries, want only state.json (no lock taken)", len(ents))
		}
	})
	t.Run("no state directory: exit 0, nothing created", func(t *testing.T) {
		f := newFixture(t)
		res := run(noRead{t}, "boot")
		if res.code != cli.ExitOK {
			t.Fatalf("boot exit %d, stderr %q", res.code, res.stderr)
		}
		if _, err := os.Lstat(f.state); !os.IsNotExist(err) {
			t.Errorf("boot created %s (%v)", f.state, err)
		}
	})
	t.Run("a damaged state file is moved aside and reported", func(t *testing.T) {
		f := newFixture(t)
		if err := os.MkdirAll(f.state, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(f.state, "state.json"), []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		res := run(noRead{t}, "boot")
		if res.code != cli.ExitState {
			t.Errorf("boot exit %d, want %d (stderr %q)", res.code, cli.ExitState, res.stderr)
		}
		if aside, _ := filepath.Glob(filepath.Join(f.state, "state.json.damaged-*")); len(aside) != 1 {
			t.Errorf("damaged state not kept aside: %v", aside)
		}
	})
}

func TestBootReclaimHelp(t *testing.T) {
	t.Setenv("LIBVIRT_DAC_HOOK_CONFIG", "/nonexistent/dir/hook.conf")
	for _, args := range [][]string{{"boot", "--help"}, {"reclaim", "--help"}, {"help"}} {
		res := run(noRead{t}, args...)
		if res.code != cli.ExitOK || !strings.Contains(res.stdout, "Usage") || res.stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, res.code, res.stdout, res.stderr)
		}
		if args[0] == "help" && (!strings.Contains(res.stdout, "libvirt-dac-hook reclaim") || !strings.Contains(res.stdout, "libvirt-dac-hook boot")) {
			t.Errorf("help does not list reclaim and boot:\n%s", res.stdout)
		}
	}
	if res := run(noRead{t}, "boot", "extra"); res.code != cli.ExitUsage {
		t.Errorf("boot extra: exit %d, want %d", res.code, cli.ExitUsage)
	}
}

// TestBootGivesBackWhatTheWatcherSaw: a crash ended a run in which
// libvirt labelled a hot-plugged file (the watcher wrote down its owner
// before); the journal holds nothing stale. boot gives the file back and
// forgets the record of the ended boot; a file the watcher saw whose
// owner changed since (an administrator's) is left alone.
func TestBootGivesBackWhatTheWatcherSaw(t *testing.T) {
	f := newFixture(t)
	f.write("img/hot.iso", "iso", imageUID+4)
	f.write("img/admin.iso", "iso", imageUID+5)
	if err := os.MkdirAll(f.state, 0o700); err != nil {
		t.Fatal(err)
	}
	l := &inventory.Labelled{}
	for _, rel := range []string{"img/hot.iso", "img/admin.iso"} {
		l.Files = append(l.Files, labelledFile(t, f.path(rel))) // the owner before libvirt's label
		if err := os.Chown(f.path(rel), qemuID, qemuID); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(f.path("img/admin.iso"), imageUID+6, imageUID+6); err != nil {
		t.Fatal(err)
	}
	if err := inventory.Save(f.state, inventory.New("vm1", "an-earlier-boot", qemuID, qemuID, []string{f.path("img")})); err != nil {
		t.Fatal(err)
	}
	if err := inventory.SaveLabelled(f.state, l); err != nil {
		t.Fatal(err)
	}
	res := run(noRead{t}, "boot")
	if res.code != cli.ExitOK {
		t.Fatalf("boot exit %d, stderr %q", res.code, res.stderr)
	}
	f.checkOwners(map[string]string{
		f.path("img/hot.iso"):   fmt.Sprintf("%d:%d", imageUID+4, imageUID+4),
		f.path("img/admin.iso"): fmt.Sprintf("%d:%d", imageUID+6, imageUID+6),
	})
	if r, err := inventory.Load(f.state, "vm1"); r != nil || err != nil {
		t.Errorf("record of the ended boot after boot: %v, %v; want it gone", r, err)
	}
}
