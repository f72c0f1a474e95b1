package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
)

// TestParseReason: the 4th argument of `release end`, as libvirt before
// 10.5 ("-") and after (the strings of virDomainShutoffReason, one of them
// with a space) passes it.
func TestParseReason(t *testing.T) {
	for _, tc := range []struct {
		arg   string
		want  apply.Reason
		known bool
	}{
		{"-", apply.ReasonNone, true},
		{"", apply.ReasonNone, true},
		{"unknown", apply.ReasonUnknown, true},
		{"shutdown", apply.ReasonShutdown, true},
		{"destroyed", apply.ReasonDestroyed, true},
		{"crashed", apply.ReasonCrashed, true},
		{"migrated", apply.ReasonMigrated, true},
		{"saved", apply.ReasonSaved, true},
		{"failed", apply.ReasonFailed, true},
		{"from snapshot", apply.ReasonFromSnapshot, true},
		{"daemon", apply.ReasonDaemon, true},
		{"Migrated", apply.ReasonNone, false},
		{"from-snapshot", apply.ReasonNone, false},
		{"teleported", apply.ReasonNone, false},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			got, known := cli.ParseReason(tc.arg)
			if got != tc.want || known != tc.known {
				t.Errorf("parseReason(%q) = %q, %v; want %q, %v", tc.arg, got, known, tc.want, tc.known)
			}
			if got.Migrated() != (tc.want == apply.ReasonMigrated) {
				t.Errorf("parseReason(%q).Migrated() = %v", tc.arg, got.Migrated())
			}
		})
	}
}

// TestReleaseReasonOnSharedFS: the reason reaches release. A disk on a
// shared filesystem (a local FUSE mount declared shared through qemu.conf's
// shared_filesystems, as an NFS export would be) stays QEMU's after
// `release end migrated` (the destination's QEMU uses it now) and is given
// back after every other reason, "-" and one this hook does not know
// included.
func TestReleaseReasonOnSharedFS(t *testing.T) {
	f := newFixture(t)
	if _, err := exec.LookPath("bindfs"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bindfs is needed for a FUSE mount: %v", err)
		}
		t.Skip("needs bindfs for a FUSE mount (apt-get install bindfs)")
	}
	shared := f.path("shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bindfs", "--no-allow-other", f.path("img"), shared).CombinedOutput(); err != nil {
		t.Fatalf("bindfs %s %s: %v: %s", f.path("img"), shared, err, out)
	}
	t.Cleanup(func() {
		// FUSE sends the release of a closed file to bindfs after close
		// returns, and the mount is busy until bindfs has handled it.
		var out []byte
		var err error
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if out, err = exec.Command("fusermount", "-u", shared).CombinedOutput(); err == nil || time.Now().After(end) {
				break
			}
		}
		if err != nil {
			t.Errorf("fusermount -u %s: %v: %s", shared, err, out)
		}
	})
	f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\nshared_filesystems = [ %q ]\n", qemuID, qemuID, shared))
	disk := shared + "/disk.raw"
	xml := f.domainXML("vm1", `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='`+disk+`'/><target dev='vda' bus='virtio'/></disk>`)
	orig := fmt.Sprintf("%d:%d", imageUID, imageUID)
	qemu := fmt.Sprintf("%d:%d", qemuID, qemuID)
	for _, tc := range []struct{ reason, want string }{
		{"migrated", qemu},
		{"-", orig},
		{"destroyed", orig},
		{"failed", orig},
		{"teleported", orig},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			if err := os.Chown(disk, imageUID, imageUID); err != nil {
				t.Fatal(err)
			}
			if res := run(strings.NewReader(xml), "vm1", "prepare", "begin", "-"); res.code != 0 {
				t.Fatalf("prepare: exit %d: %s", res.code, res.stderr)
			}
			if got := ownerOf(t, disk); got != qemu {
				t.Fatalf("after prepare %s is %s, want QEMU's %s", disk, got, qemu)
			}
			res := run(noRead{t}, "vm1", "release", "end", tc.reason)
			if res.code != 0 || res.stdout != "" {
				t.Fatalf("release end %q: exit %d, stdout %q, stderr %s", tc.reason, res.code, res.stdout, res.stderr)
			}
			if got := ownerOf(t, disk); got != tc.want {
				t.Errorf("after release end %q %s is %s, want %s", tc.reason, disk, got, tc.want)
			}
			f.checkNoEntries()
		})
	}
}
