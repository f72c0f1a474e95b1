//go:build e2e

package e2e

// What libvirt calls the hook with, per version.

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestHookCalls: the hook calls of a domain started and destroyed, in
// order, as the host's qemu.d recorder saw them. The 4th argument of
// release is where the versions differ: libvirt before 10.5 passes "-",
// libvirt 10.5 and later the shutoff reason, "destroyed" for `virsh
// destroy` (libvirt's docs/hooks.rst; qemuProcessStop in
// src/qemu/qemu_process.c passes virDomainShutoffReasonTypeToString of
// its reason). The hook reads it as apply.Reason.
func TestHookCalls(t *testing.T) {
	f := newFixture(t)
	img := f.rawImage("disk.raw", f.h.alice.owner())
	name := domainPrefix + "calls"
	skip := len(readHookCalls(t, f.host, name))
	f.mustStart(domainSpec{Name: name, Disks: []disk{fileDisk("raw", img.path, "vda")}})
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)

	reason := "-"
	if f.host.lv.name == "11" {
		reason = "destroyed"
	}
	want := []string{"prepare|begin|-", "start|begin|-", "started|begin|-", "stopped|end|-", "release|end|" + reason}
	if got := readHookCalls(t, f.host, name)[skip:]; !slices.Equal(got, want) {
		t.Errorf("libvirt %s called the hook for %s with\n  %s\nwant\n  %s", f.host.lv.name, name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// readHookCalls returns the recorded calls for domain, "OP|SUBOP|EXTRA".
func readHookCalls(t *testing.T, hs *host, domain string) []string {
	t.Helper()
	data, err := os.ReadFile(hs.hookCalls())
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("read %s: %v", hs.hookCalls(), err)
	}
	var calls []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if d, rest, ok := strings.Cut(line, "|"); ok && d == domain {
			calls = append(calls, rest)
		}
	}
	return calls
}
