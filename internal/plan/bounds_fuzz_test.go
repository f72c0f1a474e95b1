package plan

import (
	"errors"
	"strings"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// FuzzHeaderName checks the name bounds on any name a header may give,
// joined to an image path as the chain walk does: an accepted name is
// within PATH_MAX and NAME_MAX; a refused one is a one-line policy refusal
// naming the domain and the image.
func FuzzHeaderName(f *testing.F) {
	f.Add("/var/lib/libvirt/images/top.qcow2", "base.qcow2")
	f.Add("/img/top.qcow2", strings.Repeat("a", 255))
	f.Add("/img/top.qcow2", strings.Repeat("a", 256))
	f.Add("/img/top.qcow2", strings.Repeat("abcdefg/", 600))
	f.Add("/img/top.qcow2", "/"+strings.Repeat("x/", 2047))
	f.Fuzz(func(t *testing.T, given, name string) {
		if !strings.HasPrefix(given, "/") {
			given = "/" + given
		}
		b := &builder{plan: &Plan{Domain: "vm"}}
		joined := joinHeaderName(given, name)
		err := b.checkHeaderName(given, joined)
		if err == nil {
			if len(joined) > MaxPathLen {
				t.Fatalf("accepted a %d-byte path", len(joined))
			}
			for _, c := range strings.Split(joined, "/") {
				if len(c) > MaxNameLen {
					t.Fatalf("accepted a %d-byte component", len(c))
				}
			}
			return
		}
		if !errors.Is(err, owner.ErrRefused) {
			t.Fatalf("refusal %v does not wrap ErrRefused", err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "domain vm: image header of ") {
			t.Fatalf("refusal does not name the domain and image: %q", msg)
		}
	})
}

// FuzzDomainBounds feeds steps of any path length to countStep: the plan
// never holds more than MaxFilesPerDomain steps or MaxPathBytesPerDomain
// bytes of names.
func FuzzDomainBounds(f *testing.F) {
	f.Add(uint16(10), uint16(100))
	f.Add(uint16(5000), uint16(10))
	f.Add(uint16(300), uint16(4095))
	f.Fuzz(func(t *testing.T, n, pathLen uint16) {
		b := &builder{plan: &Plan{Domain: "vm"}}
		path := "/" + strings.Repeat("p", int(pathLen%4096))
		total := 0
		for range int(n % 6000) {
			st := &Step{Path: path, From: "disk[target=vda]/source"}
			if err := b.countStep(st); err != nil {
				if !errors.Is(err, owner.ErrRefused) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("countStep = %q, want a one-line refusal", err)
				}
				break
			}
			b.plan.Steps = append(b.plan.Steps, st)
			total += len(st.Path) + len(st.From)
		}
		if len(b.plan.Steps) > MaxFilesPerDomain || total > MaxPathBytesPerDomain {
			t.Fatalf("plan grew to %d steps, %d bytes", len(b.plan.Steps), total)
		}
	})
}
