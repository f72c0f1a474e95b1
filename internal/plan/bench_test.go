package plan_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/bench/gen"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// benchDomain writes the images and XML of one shape into a temp dir QEMU
// can search (0755, so no ACL steps: those are not what is measured) and
// returns the spec and the configuration the hook would plan with.
func benchDomain(b *testing.B, disks, depth int) (*gen.Spec, plan.Env) {
	b.Helper()
	dir := b.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	s, err := gen.Domain(dir, disks, depth)
	if err != nil {
		b.Fatal(err)
	}
	h := config.DefaultHook()
	return s, plan.Env{
		Policy:       owner.Policy{Protected: h.ProtectedPaths},
		MaxDepth:     h.MaxBackingDepth,
		RunAs:        config.Identity{UID: 64055, GID: 107, Groups: []uint32{107}},
		ResolveLabel: config.ParseLabel,
		ParentACL:    h.ParentACL,
	}
}

// reportPerImage adds ns/image: the cost of one iteration spread over
// every image file of the domain (disks × depth).
func reportPerImage(b *testing.B, images int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(images), "ns/image")
}

// BenchmarkBuild times planning alone: resolving and opening every file,
// reading each image header down the chain, checking policy and parent
// directories. The XML is parsed once, outside the loop.
func BenchmarkBuild(b *testing.B) {
	for _, c := range gen.Shapes {
		b.Run(c.Name, func(b *testing.B) {
			s, env := benchDomain(b, c.Disks, c.Depth)
			d, err := domain.Parse(s.XML)
			if err != nil {
				b.Fatal(err)
			}
			checkSteps(b, d, env, len(s.Images))
			b.ReportAllocs()
			for b.Loop() {
				p, err := plan.Build(d, env)
				if err != nil {
					b.Fatal(err)
				}
				p.Close()
			}
			reportPerImage(b, len(s.Images))
		})
	}
}

// BenchmarkParseBuild times what prepare does before it touches the
// journal: domain XML bytes to a plan, as the hook does it.
func BenchmarkParseBuild(b *testing.B) {
	for _, c := range gen.Shapes {
		b.Run(c.Name, func(b *testing.B) {
			s, env := benchDomain(b, c.Disks, c.Depth)
			b.SetBytes(int64(len(s.XML)))
			b.ReportAllocs()
			for b.Loop() {
				d, err := domain.Parse(s.XML)
				if err != nil {
					b.Fatal(err)
				}
				p, err := plan.Build(d, env)
				if err != nil {
					b.Fatal(err)
				}
				p.Close()
			}
			reportPerImage(b, len(s.Images))
		})
	}
}

// checkSteps makes sure the benchmark measures what it says: one chown
// step per image, i.e. every backing chain was followed.
func checkSteps(b *testing.B, d *domain.Domain, env plan.Env, images int) {
	b.Helper()
	p, err := plan.Build(d, env)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	n := 0
	for _, st := range p.Steps {
		if st.Action == plan.Chown || st.Action == plan.Keep {
			n++
		}
	}
	if n != images {
		b.Fatalf("plan has %d file steps, want %d: %s", n, images, fmt.Sprint(p.Notes))
	}
}
