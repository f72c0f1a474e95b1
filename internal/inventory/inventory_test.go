package inventory

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTakeSaveLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files other owners")
	}
	dir := t.TempDir()
	for _, f := range []struct {
		name     string
		uid, gid int
	}{{"a.img", 1000, 1000}, {"qemu.img", 64055, 994}, {".hidden", 1000, 1000}, {"b\xffweird.iso", 0, 6}} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, f.uid, f.gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.img", filepath.Join(dir, "link.img")); err != nil {
		t.Fatal(err)
	}
	rec := Take("vm/1", "boot", 64055, 994, []string{dir, dir, "relative"})
	got := map[string][2]uint32{}
	for _, f := range rec.Files {
		got[f.Path()] = [2]uint32{f.UID, f.GID}
	}
	want := map[string][2]uint32{
		filepath.Join(dir, "a.img"):          {1000, 1000},
		filepath.Join(dir, "b\xffweird.iso"): {0, 6},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Take() files (-want +got):\n%s", d)
	}
	state := t.TempDir()
	if err := Save(state, rec); err != nil {
		t.Fatal(err)
	}
	back, err := Load(state, "vm/1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(rec, back); d != "" {
		t.Errorf("Load(Save(r)) differs (-saved +loaded):\n%s", d)
	}
	if r, err := Load(state, "vm2"); r != nil || err != nil {
		t.Errorf("Load(other domain) = %v, %v; want nil, nil", r, err)
	}
	if err := Remove(state, "vm/1"); err != nil {
		t.Fatal(err)
	}
	if r, err := Load(state, "vm/1"); r != nil || err != nil {
		t.Errorf("Load after Remove = %v, %v; want nil, nil", r, err)
	}
}

func TestTakeBounded(t *testing.T) {
	dir := t.TempDir()
	for i := range MaxFiles + 5 {
		if err := os.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(i)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rec := Take("vm", "boot", 64055, 994, []string{dir})
	if len(rec.Files) != MaxFiles || !rec.Truncated {
		t.Errorf("Take(%d files) = %d files, truncated %v; want %d, true", MaxFiles+5, len(rec.Files), rec.Truncated, MaxFiles)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not json", "{"},
		{"other domain", `{"domain":"vm2","files":[]}`},
		{"relative dir", `{"domain":"vm","files":[{"dir":"img","name":"61"}]}`},
		{"unclean dir", `{"domain":"vm","files":[{"dir":"/a/../etc","name":"61"}]}`},
		{"slash in name", `{"domain":"vm","files":[{"dir":"/a","name":"2f"}]}`},
		{"dotdot name", `{"domain":"vm","files":[{"dir":"/a","name":"2e2e"}]}`},
		{"empty name", `{"domain":"vm","files":[{"dir":"/a","name":""}]}`},
		{"not hex", `{"domain":"vm","files":[{"dir":"/a","name":"zz"}]}`},
	} {
		if _, err := Decode([]byte(tc.in), "vm"); err == nil {
			t.Errorf("Decode(%s) = nil error, want a refusal", tc.name)
		}
	}
}

// FuzzDecode: a record read back names only files directly inside an
// absolute clean directory.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"domain":"vm","files":[{"dir":"/var/lib/libvirt/images","name":"612e696d67","dev":1,"ino":2,"uid":1,"gid":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b, "vm")
		if err != nil {
			return
		}
		for _, fl := range r.Files {
			p := fl.Path()
			if filepath.Dir(p) != fl.Dir || !filepath.IsAbs(p) {
				t.Fatalf("Decode accepted %q in %q, which is not directly inside it", p, fl.Dir)
			}
		}
	})
}
