package image

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// qemuImg finds qemu-img or skips: these tests compare Read with it.
func qemuImg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed: the comparison tests need it as the reference")
	}
	return p
}

func run(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// qemuInfo is the part of `qemu-img info --output=json` Read must agree with.
type qemuInfo struct {
	Format                string `json:"format"`
	BackingFilename       string `json:"backing-filename"`
	BackingFilenameFormat string `json:"backing-filename-format"`
	FormatSpecific        struct {
		Data struct {
			DataFile string `json:"data-file"`
			Extents  []struct {
				Filename string `json:"filename"`
			} `json:"extents"`
		} `json:"data"`
	} `json:"format-specific"`
}

func infoFromQemu(t *testing.T, qemu, path string) qemuInfo {
	t.Helper()
	cmd := exec.Command(qemu, "info", "--output=json", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v\n%s", path, err, stderr.String())
	}
	var qi qemuInfo
	if err := json.Unmarshal(out, &qi); err != nil {
		t.Fatalf("parse qemu-img info %s: %v\n%s", path, err, out)
	}
	return qi
}

func readFile(t *testing.T, path string) (Info, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return probeRead(f, st.Size())
}

// hideBackingFormat overwrites the magic of the qcow2 backing format
// extension so the image carries an unknown extension instead: current
// qemu-img refuses to create an image without a recorded backing format,
// but old images without one are common.
func hideBackingFormat(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b[:4096], []byte{0xe2, 0x79, 0x2a, 0xca})
	if i < 0 {
		t.Fatalf("%s has no backing format extension", path)
	}
	copy(b[i:], []byte{0x77, 0x77, 0x77, 0x77})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadMatchesQemuImg creates real images with qemu-img and checks Read
// reports the format, backing name, backing format, data file and extents
// that `qemu-img info` reports.
func TestReadMatchesQemuImg(t *testing.T) {
	qemu := qemuImg(t)
	// longRel is a relative backing name close to the 1023-byte limit.
	longRel := strings.Repeat("./", 500) + "base.raw"

	tests := []struct {
		name string
		// setup creates the image in dir (which holds base.raw, base.qcow2
		// and base.vmdk) and returns its file name.
		setup       func(t *testing.T, dir string) string
		wantBacking string // sanity check so agreement on "" cannot pass by accident
		wantExtents int
	}{
		{name: "raw", setup: func(t *testing.T, dir string) string { return "base.raw" }},
		{name: "empty raw", setup: func(t *testing.T, dir string) string {
			run(t, dir, "touch", "empty.img")
			return "empty.img"
		}},
		{name: "qcow2 v3 no backing", setup: func(t *testing.T, dir string) string { return "base.qcow2" }},
		{name: "qcow2 v2 no backing", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "img", "1M")
			return "img"
		}},
		{name: "qcow2 v2 relative backing with format", wantBacking: "base.qcow2", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.qcow2", "-F", "qcow2", "img")
			return "img"
		}},
		{name: "qcow2 v3 relative backing with format", wantBacking: "base.qcow2", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-o", "compat=1.1", "-b", "base.qcow2", "-F", "qcow2", "img")
			return "img"
		}},
		{name: "qcow2 v3 absolute raw backing", wantBacking: "/base.raw", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-b", filepath.Join(dir, "base.raw"), "-F", "raw", "img")
			return "img"
		}},
		{name: "qcow2 v2 absolute backing", wantBacking: "/base.qcow2", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", filepath.Join(dir, "base.qcow2"), "-F", "qcow2", "img")
			return "img"
		}},
		{name: "qcow2 v3 backing format not recorded", wantBacking: "base.qcow2", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "img")
			hideBackingFormat(t, filepath.Join(dir, "img"))
			return "img"
		}},
		{name: "qcow2 v2 backing format not recorded", wantBacking: "base.raw", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.raw", "-F", "raw", "img")
			hideBackingFormat(t, filepath.Join(dir, "img"))
			return "img"
		}},
		{name: "qcow2 backing name near 1023 bytes", wantBacking: longRel, setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-b", longRel, "-F", "raw", "img")
			return "img"
		}},
		{name: "qcow2 backing not yet existing", wantBacking: "later/new.qcow2", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-u", "-b", "later/new.qcow2", "-F", "qcow2", "img", "1M")
			return "img"
		}},
		{name: "qcow2 external data file", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-o", "data_file=img.data", "img", "1M")
			return "img"
		}},
		{name: "qcow2 external data file and backing", wantBacking: "base.qcow2", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-o", "data_file=img.data", "-b", "base.qcow2", "-F", "qcow2", "img")
			return "img"
		}},
		{name: "qcow v1 backing", wantBacking: "base.raw", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qcow", "-b", "base.raw", "-F", "raw", "img")
			return "img"
		}},
		{name: "qed no backing", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qed", "img", "1M")
			return "img"
		}},
		{name: "qed qcow2 backing", wantBacking: "base.qcow2", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qed", "-b", "base.qcow2", "-F", "qcow2", "img")
			return "img"
		}},
		{name: "qed raw backing no probe", wantBacking: "/base.raw", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "qed", "-b", filepath.Join(dir, "base.raw"), "-F", "raw", "img")
			return "img"
		}},
		{name: "vmdk monolithicSparse no backing", setup: func(t *testing.T, dir string) string { return "base.vmdk" }},
		{name: "vmdk monolithicSparse backing", wantBacking: "base.vmdk", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", "-b", "base.vmdk", "-F", "vmdk", "img.vmdk")
			return "img.vmdk"
		}},
		{name: "vmdk monolithicSparse absolute backing", wantBacking: "/base.vmdk", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "vmdk", "-b", filepath.Join(dir, "base.vmdk"), "-F", "vmdk", "img.vmdk")
			return "img.vmdk"
		}},
		{name: "vmdk streamOptimized backing", wantBacking: "base.vmdk", setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "-b", "base.vmdk", "-F", "vmdk", "img.vmdk")
			return "img.vmdk"
		}},
		{name: "vmdk twoGbMaxExtentSparse backing", wantBacking: "base.vmdk", wantExtents: 1, setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "-b", "base.vmdk", "-F", "vmdk", "img.vmdk")
			return "img.vmdk"
		}},
		{name: "vmdk twoGbMaxExtentSparse several extents", wantExtents: 3, setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "img.vmdk", "5G")
			return "img.vmdk"
		}},
		{name: "vmdk monolithicFlat", wantExtents: 1, setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "img.vmdk", "1M")
			return "img.vmdk"
		}},
		{name: "vmdk twoGbMaxExtentFlat", wantExtents: 3, setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", "img.vmdk", "5G")
			return "img.vmdk"
		}},
		{name: "vmdk hand-written descriptor with absolute extent and backing", wantBacking: "/base.vmdk", wantExtents: 2, setup: func(t *testing.T, dir string) string {
			run(t, dir, qemu, "create", "-q", "-f", "raw", "flat.raw", "1M")
			run(t, dir, qemu, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", "sparse.vmdk", "1M")
			desc := "# Disk DescriptorFile\r\nversion=1\r\nCID=12345678\r\nparentCID=ffffffff\r\n" +
				"createType=\"twoGbMaxExtentSparse\"\r\n" +
				"parentFileNameHint=\"" + filepath.Join(dir, "base.vmdk") + "\"\r\n" +
				"# Extent description\r\n" +
				"RDONLY 2048 FLAT \"ignored-readonly.raw\" 0\r\n" +
				"RW 2048 FLAT \"" + filepath.Join(dir, "flat.raw") + "\" 0\r\n" +
				"RW 0 SPARSE \"ignored-empty.vmdk\"\r\n" +
				"RW 2048 SPARSE \"sparse.vmdk\"\r\n"
			if err := os.WriteFile(filepath.Join(dir, "img.vmdk"), []byte(desc), 0o644); err != nil {
				t.Fatal(err)
			}
			return "img.vmdk"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			run(t, dir, qemu, "create", "-q", "-f", "raw", "base.raw", "1M")
			run(t, dir, qemu, "create", "-q", "-f", "qcow2", "base.qcow2", "1M")
			run(t, dir, qemu, "create", "-q", "-f", "vmdk", "base.vmdk", "1M")
			path := filepath.Join(dir, tc.setup(t, dir))

			got, err := readFile(t, path)
			if err != nil {
				t.Fatalf("probeRead(%s) = %v", path, err)
			}
			want := infoFromQemu(t, qemu, path)

			if got.Format != want.Format {
				t.Errorf("probeRead(%s).Format = %q, qemu-img says %q", path, got.Format, want.Format)
			}
			if got.BackingName != want.BackingFilename {
				t.Errorf("probeRead(%s).BackingName = %q, qemu-img says %q", path, got.BackingName, want.BackingFilename)
			}
			if got.BackingFormat != want.BackingFilenameFormat {
				t.Errorf("probeRead(%s).BackingFormat = %q, qemu-img says %q", path, got.BackingFormat, want.BackingFilenameFormat)
			}
			if got.DataFile != want.FormatSpecific.Data.DataFile {
				t.Errorf("probeRead(%s).DataFile = %q, qemu-img says %q", path, got.DataFile, want.FormatSpecific.Data.DataFile)
			}
			// qemu-img lists a monolithic sparse file as its own extent and
			// resolves descriptor extents against the descriptor's directory.
			var gotExtents, wantExtents []string
			if got.Extents == nil && len(want.FormatSpecific.Data.Extents) > 0 {
				gotExtents = []string{path}
			}
			for _, e := range got.Extents {
				if !filepath.IsAbs(e) {
					e = filepath.Join(dir, e)
				}
				gotExtents = append(gotExtents, e)
			}
			for _, e := range want.FormatSpecific.Data.Extents {
				wantExtents = append(wantExtents, e.Filename)
			}
			if diff := cmp.Diff(wantExtents, gotExtents); diff != "" {
				t.Errorf("probeRead(%s) extents differ from qemu-img (-qemu-img +Read):\n%s", path, diff)
			}

			if strings.HasPrefix(tc.wantBacking, "/") {
				tc.wantBacking = filepath.Join(dir, tc.wantBacking)
			}
			if got.BackingName != tc.wantBacking {
				t.Errorf("probeRead(%s).BackingName = %q, want %q", path, got.BackingName, tc.wantBacking)
			}
			if len(got.Extents) != tc.wantExtents {
				t.Errorf("probeRead(%s).Extents = %q, want %d extents", path, got.Extents, tc.wantExtents)
			}
		})
	}
}

// TestReadVMDKExtentFile reads the extent file of a split sparse VMDK,
// which qemu-img cannot open alone (it has no descriptor, hence no CID):
// it is a sparse extent with no parent and no further extents.
func TestReadVMDKExtentFile(t *testing.T) {
	qemu := qemuImg(t)
	dir := t.TempDir()
	run(t, dir, qemu, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "img.vmdk", "1M")
	path := filepath.Join(dir, "img-s001.vmdk")
	got, err := readFile(t, path)
	if err != nil || !cmp.Equal(got, Info{Format: "vmdk"}) {
		t.Errorf("probeRead(%s) = %+v, %v; want Info{Format: vmdk}, nil", path, got, err)
	}
}

// TestReadFormatNeverProbesRaw checks the reason ReadFormat exists: a raw
// disk whose guest wrote a qcow2 header naming a host file must not be
// reported as having a backing file when the XML says raw.
func TestReadFormatNeverProbesRaw(t *testing.T) {
	qemu := qemuImg(t)
	dir := t.TempDir()
	run(t, dir, qemu, "create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", "-u", "evil", "1M")
	path := filepath.Join(dir, "evil")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}

	probed, err := probeRead(f, st.Size())
	if err != nil || probed.BackingName != "/etc/shadow" {
		t.Fatalf("probeRead(%s) = %+v, %v; want the forged backing /etc/shadow", path, probed, err)
	}
	asRaw, err := ReadFormat(f, st.Size(), "raw")
	if err != nil || !cmp.Equal(asRaw, Info{Format: "raw"}) {
		t.Errorf("ReadFormat(%s, raw) = %+v, %v; want Info{Format: raw}, nil", path, asRaw, err)
	}
	asQcow2, err := ReadFormat(f, st.Size(), "qcow2")
	if err != nil || !cmp.Equal(asQcow2, probed) {
		t.Errorf("ReadFormat(%s, qcow2) = %+v, %v; want %+v, nil", path, asQcow2, err, probed)
	}
}
