package apply_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/bench/gen"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// benchWorld is one generated domain with a real journal in a temp dir.
type benchWorld struct {
	b      *testing.B
	spec   *gen.Spec
	dom    *domain.Domain
	env    plan.Env
	runner *apply.Runner
}

func newBenchWorld(b *testing.B, disks, depth int) *benchWorld {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root: prepare and release chown the generated images for real")
	}
	dir := b.TempDir()
	// Searchable by QEMU without ACLs: ACL steps are not what is measured.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		b.Fatal(err)
	}
	s, err := gen.Domain(images, disks, depth)
	if err != nil {
		b.Fatal(err)
	}
	d, err := domain.Parse(s.XML)
	if err != nil {
		b.Fatal(err)
	}
	h := config.DefaultHook()
	h.StateDir = filepath.Join(dir, "state")
	store, err := journal.Open(h.StateDir, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	return &benchWorld{
		b: b, spec: s, dom: d,
		env: plan.Env{
			Policy:       owner.Policy{Protected: append(h.ProtectedPaths, h.StateDir)},
			MaxDepth:     h.MaxBackingDepth,
			RunAs:        config.Identity{UID: 64055, GID: 107, Groups: []uint32{107}},
			ResolveLabel: config.ParseLabel,
			ParentACL:    h.ParentACL,
		},
		runner: &apply.Runner{Store: store, Log: log},
	}
}

func (w *benchWorld) plan() *plan.Plan {
	w.b.Helper()
	p, err := plan.Build(w.dom, w.env)
	if err != nil {
		w.b.Fatal(err)
	}
	return p
}

func (w *benchWorld) prepare() {
	w.b.Helper()
	p := w.plan()
	defer p.Close()
	if err := w.runner.Prepare(p); err != nil {
		w.b.Fatal(err)
	}
}

func (w *benchWorld) release() {
	w.b.Helper()
	if err := w.runner.Release(w.spec.Name, "-"); err != nil {
		w.b.Fatal(err)
	}
}

// wantOwner fails unless every image has the owner given, so a benchmark
// cannot pass while doing nothing.
func (w *benchWorld) wantOwner(uid, gid uint32) {
	w.b.Helper()
	for _, p := range w.spec.Images {
		fi, err := os.Stat(p)
		if err != nil {
			w.b.Fatal(err)
		}
		h, err := owner.Open(p)
		if err != nil {
			w.b.Fatal(err)
		}
		u, g := h.Owner()
		h.Close()
		if u != uid || g != gid {
			w.b.Fatalf("owner of %s (%s) = %d:%d, want %d:%d", p, fi.Name(), u, g, uid, gid)
		}
	}
}

// reportPerImage adds ns/image: the cost of one iteration spread over
// every image file of the domain (disks × depth).
func reportPerImage(b *testing.B, images int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(images), "ns/image")
}

// BenchmarkPrepare times Runner.Prepare on a built plan: lock, load the
// journal, record every image, save it durably, chown every image. The
// plan is built and the images given back outside the timer.
func BenchmarkPrepare(b *testing.B) {
	for _, c := range gen.Shapes {
		b.Run(c.Name, func(b *testing.B) {
			w := newBenchWorld(b, c.Disks, c.Depth)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				p := w.plan()
				b.StartTimer()
				if err := w.runner.Prepare(p); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				p.Close()
				w.release()
				b.StartTimer()
			}
			b.StopTimer()
			reportPerImage(b, len(w.spec.Images))
			w.prepare()
			w.wantOwner(64055, 107)
			w.release()
			w.wantOwner(0, 0)
		})
	}
}

// BenchmarkRelease times Runner.Release: lock, load the journal, drop the
// domain's holds durably, reopen and give back every image, save again.
func BenchmarkRelease(b *testing.B) {
	for _, c := range gen.Shapes {
		b.Run(c.Name, func(b *testing.B) {
			w := newBenchWorld(b, c.Disks, c.Depth)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				w.prepare()
				b.StartTimer()
				w.release()
			}
			b.StopTimer()
			reportPerImage(b, len(w.spec.Images))
			w.wantOwner(0, 0)
		})
	}
}

// BenchmarkPlanPrepareRelease is one start/stop cycle of a domain as the
// hook does it, minus process start and configuration: XML to plan,
// prepare, release.
func BenchmarkPlanPrepareRelease(b *testing.B) {
	for _, c := range gen.Shapes {
		b.Run(c.Name, func(b *testing.B) {
			w := newBenchWorld(b, c.Disks, c.Depth)
			b.ReportAllocs()
			for b.Loop() {
				d, err := domain.Parse(w.spec.XML)
				if err != nil {
					b.Fatal(err)
				}
				p, err := plan.Build(d, w.env)
				if err != nil {
					b.Fatal(err)
				}
				err = w.runner.Prepare(p)
				p.Close()
				if err != nil {
					b.Fatal(err)
				}
				w.release()
			}
			reportPerImage(b, len(w.spec.Images))
			w.wantOwner(0, 0)
		})
	}
}
