package inventory

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRecordSaveLoad(t *testing.T) {
	r := New("vm/1", "boot", 64055, 994, []string{"/a", "/a", "relative", "/b/../c", "/d"})
	if d := cmp.Diff([]string{"/a", "/d"}, r.Dirs); d != "" {
		t.Errorf("New() dirs (-want +got):\n%s", d)
	}
	state := t.TempDir()
	if err := Save(state, r); err != nil {
		t.Fatal(err)
	}
	back, err := Load(state, "vm/1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, back); d != "" {
		t.Errorf("Load(Save(r)) differs (-saved +loaded):\n%s", d)
	}
	if err := SaveLabelled(state, &Labelled{Files: map[string]File{}}); err != nil {
		t.Fatal(err)
	}
	all, err := List(state)
	if err != nil || len(all) != 1 || all[0].Domain != "vm/1" {
		t.Errorf("List() = %+v, %v; want vm/1's record only", all, err)
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

func TestStat(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.img", ".hidden", "b\xffweird.iso"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.img", filepath.Join(dir, "link.img")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"a.img", true}, {"b\xffweird.iso", true}, {".hidden", false}, {"sub", false}, {"link.img", false}, {"gone", false}, {"", false}} {
		f, ok := Stat(dir, tc.name)
		if ok != tc.ok {
			t.Errorf("Stat(%q) ok = %v, want %v", tc.name, ok, tc.ok)
		}
		if ok && f.Path() != filepath.Join(dir, tc.name) {
			t.Errorf("Stat(%q).Path() = %q", tc.name, f.Path())
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not json", "{"},
		{"other domain", `{"domain":"vm2","dirs":[]}`},
		{"relative dir", `{"domain":"vm","dirs":["img"]}`},
		{"unclean dir", `{"domain":"vm","dirs":["/a/../etc"]}`},
	} {
		if _, err := Decode([]byte(tc.in), "vm"); err == nil {
			t.Errorf("Decode(%s) = nil error, want a refusal", tc.name)
		}
	}
}

func TestLoadLabelledDropsBadEntries(t *testing.T) {
	state := t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, "inventory"), 0o700); err != nil {
		t.Fatal(err)
	}
	in := `{"files":{
"/img/a.img":{"dir":"/img","name":"612e696d67","uid":1},
"/etc/shadow":{"dir":"/img","name":"612e696d67","uid":1},
"/img/x":{"dir":"/img","name":"2e2e","uid":1},
"/img/y":{"dir":"img","name":"79","uid":1}}}`
	if err := os.WriteFile(filepath.Join(state, "inventory", labelledName), []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := LoadLabelled(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files) != 1 || l.Files["/img/a.img"].UID != 1 {
		t.Errorf("LoadLabelled kept %+v, want only /img/a.img", l.Files)
	}
}

// FuzzDecode: a record read back names only absolute clean directories.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"domain":"vm","dirs":["/var/lib/libvirt/images","/dev"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b, "vm")
		if err != nil {
			return
		}
		for _, d := range r.Dirs {
			if !filepath.IsAbs(d) || filepath.Clean(d) != d {
				t.Fatalf("Decode accepted directory %q", d)
			}
		}
	})
}

// FuzzLoadLabelled: an entry kept names a file directly inside its
// absolute clean directory, under the path it is filed by.
func FuzzLoadLabelled(f *testing.F) {
	f.Add([]byte(`{"files":{"/img/a.img":{"dir":"/img","name":"612e696d67","uid":1}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		state := t.TempDir()
		if err := os.MkdirAll(filepath.Join(state, "inventory"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(state, "inventory", labelledName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, _ := LoadLabelled(state)
		for p, fl := range l.Files {
			if fl.Path() != p || filepath.Dir(p) != fl.Dir || !filepath.IsAbs(p) {
				t.Fatalf("LoadLabelled kept %q for %+v", p, fl)
			}
		}
	})
}
