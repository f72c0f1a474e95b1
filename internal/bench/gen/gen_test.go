package gen

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/image"
)

// TestDomain checks that what the benchmarks run on is what they claim:
// the chains the hook's image reader follows, and XML naming each top image.
func TestDomain(t *testing.T) {
	for _, c := range []struct {
		name         string
		disks, depth int
	}{
		{"one disk", 1, 1},
		{"chains", 3, 4},
		{"many disks", 30, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Domain(dir, c.disks, c.depth)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(s.Images), c.disks*c.depth; got != want {
				t.Fatalf("%d images, want %d", got, want)
			}
			for i, p := range s.Images {
				info := readInfo(t, p)
				want := ""
				if (i+1)%c.depth != 0 {
					want = s.Images[i+1]
				}
				if info.Format != image.FormatQcow2 || info.BackingName != want {
					t.Errorf("image.Read(%s) = %+v, want qcow2 backed by %q", p, info, want)
				}
				if want != "" && info.BackingFormat != "qcow2" {
					t.Errorf("image.Read(%s).BackingFormat = %q, want qcow2", p, info.BackingFormat)
				}
			}
			d, err := domain.Parse(s.XML)
			if err != nil {
				t.Fatal(err)
			}
			if d.Name != s.Name {
				t.Errorf("domain name %q, want %q", d.Name, s.Name)
			}
			var tops []string
			for _, r := range d.Resources {
				if r.Kind == domain.KindDisk {
					if !r.ProbeBacking || r.Format != "qcow2" {
						t.Errorf("%s: %+v, want a qcow2 disk whose chain is probed", r.From, r)
					}
					tops = append(tops, r.Path)
				}
			}
			if len(tops) != c.disks {
				t.Fatalf("%d disks in the XML, want %d", len(tops), c.disks)
			}
			for i, p := range tops {
				if p != s.Images[i*c.depth] {
					t.Errorf("disk %d is %s, want %s", i, p, s.Images[i*c.depth])
				}
			}
			onDisk, err := os.ReadFile(filepath.Join(dir, "domain.xml"))
			if err != nil || string(onDisk) != string(s.XML) {
				t.Errorf("domain.xml does not hold the XML (err %v)", err)
			}
		})
	}
}

// TestQemuImgAccepts makes sure the native images are valid qcow2, not just
// valid to our own reader.
func TestQemuImgAccepts(t *testing.T) {
	qi, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed: only the hook's reader checks the images")
	}
	dir := t.TempDir()
	s, err := Domain(dir, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Images {
		if out, err := exec.Command(qi, "check", "-f", "qcow2", p).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check %s: %v\n%s", p, err, out)
		}
	}
	out, err := exec.Command(qi, "info", "--backing-chain", "-U", s.Images[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	for _, p := range s.Images {
		if !bytes.Contains(out, []byte("image: "+p)) {
			t.Errorf("qemu-img info --backing-chain does not list %s:\n%s", p, out)
		}
	}
}

func TestDomainRefusesBadShape(t *testing.T) {
	for _, c := range []struct {
		name         string
		dir          string
		disks, depth int
	}{
		{"no disks", "/tmp", 0, 1},
		{"no depth", "/tmp", 1, 0},
		{"relative dir", "rel", 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Domain(c.dir, c.disks, c.depth); err == nil {
				t.Errorf("Domain(%q, %d, %d) = nil error", c.dir, c.disks, c.depth)
			}
		})
	}
}

func TestDiskSuffix(t *testing.T) {
	for i, want := range map[int]string{0: "a", 25: "z", 26: "aa", 255: "iv"} {
		if got := DiskSuffix(i); got != want {
			t.Errorf("DiskSuffix(%d) = %q, want %q", i, got, want)
		}
	}
}

func readInfo(t *testing.T, p string) image.Info {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	info, err := image.ReadFormat(f, st.Size(), image.FormatQcow2)
	if err != nil {
		t.Fatalf("image.Read(%s): %v", p, err)
	}
	return info
}
