//go:build e2e

package e2e

// Two hosts side by side, as the migration scenarios run them.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTwoHosts: a second host starts beside the default one, with a
// host_uuid of its own, runs a domain on a file of the shared work dir
// while the first runs another, and stops without touching the first
// host's domain: its QEMU still runs and its files stay QEMU's until it
// is destroyed, when both hosts' files have their owners back.
func TestTwoHosts(t *testing.T) {
	f := newFixture(t)
	a := f.host
	nameA, nameB := domainPrefix+"two-a", domainPrefix+"two-b"
	imgA := f.rawImage("a.raw", f.h.alice.owner())
	f.mustStart(domainSpec{Name: nameA, Disks: []disk{fileDisk("raw", imgA.path, "vda")}})

	b, err := e2e.startHost("b", strictMode, "")
	if err != nil {
		t.Fatalf("start host b: %v", err)
	}
	t.Cleanup(func() {
		if err := b.stop(); err != nil {
			t.Errorf("stop host b: %v", err)
		}
	})
	if b.uuid == a.uuid {
		t.Fatalf("hosts a and b share host_uuid %s", a.uuid)
	}
	if out, err := b.virsh(10*time.Second, "capabilities"); err != nil || !strings.Contains(out, "<uuid>"+b.uuid+"</uuid>") {
		t.Errorf("host b's capabilities do not carry its host_uuid %s (%v)", b.uuid, err)
	}
	if out, _ := b.virsh(10*time.Second, "list", "--all", "--name"); strings.Contains(out, nameA) {
		t.Errorf("host b lists host a's domain %s: %s", nameA, out)
	}

	// Host b's files in a directory of their own: a check after a domain
	// stopped finds any file of its directory still QEMU's.
	fb := &fixture{t: t, h: f.h, host: b, dir: filepath.Join(f.dir, "b")}
	if err := os.Mkdir(fb.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	imgB := fb.rawImage("b.raw", f.h.bob.owner())
	fb.mustStart(domainSpec{Name: nameB, Disks: []disk{fileDisk("raw", imgB.path, "vda")}})
	f.check("both running", true, nameA)
	fb.check("both running", true, nameB)
	fb.destroy(nameB)
	pidA := a.qemuPID(t, nameA)
	if err := b.stop(); err != nil {
		t.Fatalf("stop host b: %v", err)
	}
	if !alive(pidA) {
		t.Fatalf("stopping host b killed host a's QEMU (pid %d) of %s", pidA, nameA)
	}
	if out, err := a.virsh(10*time.Second, "domstate", nameA); err != nil || out != "running" {
		t.Fatalf("after host b stopped, domstate %s on host a = %q, %v; want running", nameA, out, err)
	}
	fb.check("host b stopped", false, nameB)
	f.check("host b stopped, host a's domain running", true, nameA)
	f.destroy(nameA)
	f.check("after destroy", false, nameA)
}
