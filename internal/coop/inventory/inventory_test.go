package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRecordSaveLoad(t *testing.T) {
	for _, tc := range []struct{ name, domain string }{
		{"plain", "vm/1"},
		{"invalid UTF-8", "vm\xff\xfe-\xc3"},
		{"200 bytes", strings.Repeat("d", 200)},
		{"longer than NAME_MAX", strings.Repeat("\xe2\x82\xac", 300)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(tc.domain, "boot", 64055, 994, []string{"/a", "/a", "relative", "/b/../c", "/d\xff"})
			r.Gen, r.Held = 42, []string{"/a/x\xfe.img"}
			if d := cmp.Diff([]string{"/a", "/d\xff"}, r.Dirs); d != "" {
				t.Errorf("New() dirs (-want +got):\n%s", d)
			}
			state := t.TempDir()
			if err := Save(state, r); err != nil {
				t.Fatal(err)
			}
			if n := NameOf(tc.domain); len(n) > 255 || strings.ContainsAny(n, "/\x00") {
				t.Errorf("NameOf(%q) = %q: not a file name", tc.domain, n)
			}
			back, err := Load(state, tc.domain)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(r, back); d != "" {
				t.Errorf("Load(Save(r)) differs (-saved +loaded):\n%s", d)
			}
			if err := SaveLabelled(state, &Labelled{}); err != nil {
				t.Fatal(err)
			}
			all, err := List(state)
			if err != nil || len(all) != 1 || all[0].Domain != tc.domain {
				t.Errorf("List() = %+v, %v; want %q's record only", all, err, tc.domain)
			}
			if r, err := Load(state, "vm2"); r != nil || err != nil {
				t.Errorf("Load(other domain) = %v, %v; want nil, nil", r, err)
			}
			if err := Remove(state, tc.domain); err != nil {
				t.Fatal(err)
			}
			if r, err := Load(state, tc.domain); r != nil || err != nil {
				t.Errorf("Load after Remove = %v, %v; want nil, nil", r, err)
			}
		})
	}
}

// TestListSkipsDamaged: a record a crash left empty, or garbled, is
// named in the error; the others are still listed.
func TestListSkipsDamaged(t *testing.T) {
	state := t.TempDir()
	for _, d := range []string{"vm1", "vm2", "vm3"} {
		if err := Save(state, New(d, "boot", 1, 1, []string{"/img"})); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(state, dirName)
	if err := os.WriteFile(filepath.Join(dir, NameOf("vm1")), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, NameOf("vm2")), []byte(`{"domain":`), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := List(state)
	if len(recs) != 1 || recs[0].Domain != "vm3" {
		t.Errorf("List() = %+v, want vm3's record", recs)
	}
	if err == nil || !strings.Contains(err.Error(), NameOf("vm1")) || !strings.Contains(err.Error(), NameOf("vm2")) {
		t.Errorf("List() error = %v, want both damaged records named", err)
	}
}

// TestNoLinkFollowed: a symlink at a record's name, or at the inventory
// directory itself, is never followed for reading or writing.
func TestNoLinkFollowed(t *testing.T) {
	state, elsewhere := t.TempDir(), t.TempDir()
	victim := filepath.Join(elsewhere, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MakeDir(state); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(state, dirName, labelledName)); err != nil {
		t.Fatal(err)
	}
	if err := SaveLabelled(state, &Labelled{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("victim = %q after SaveLabelled over a link, want it untouched", b)
	}
	if err := os.Symlink(victim, filepath.Join(state, dirName, NameOf("vm1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(state, "vm1"); err == nil {
		t.Error("Load through a symlinked record = nil error, want a refusal")
	}
	if err := Remove(state, "vm1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("Remove through a link removed its target: %v", err)
	}
	linked := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(linked, dirName)); err != nil {
		t.Fatal(err)
	}
	if err := Save(linked, New("vm1", "boot", 1, 1, nil)); err == nil {
		t.Error("Save into a symlinked inventory directory = nil error, want a refusal")
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 1 {
		t.Errorf("Save wrote %d files where the link leads", len(ents)-1)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"not json", "{"},
		{"no domain", `{"dirs":[]}`},
		{"relative dir", `{"domain":"dm0=","dirs":["aW1n"]}`},
		{"unclean dir", `{"domain":"dm0=","dirs":["L2EvLi4vZXRj"]}`},
	} {
		if _, err := Decode([]byte(tc.in)); err == nil {
			t.Errorf("Decode(%s) = nil error, want a refusal", tc.name)
		}
	}
}

func TestLoadLabelledDropsBadEntries(t *testing.T) {
	state := t.TempDir()
	l := &Labelled{Files: []File{
		{Dir: "/img", Path: "/img/a.img", UID: 1},
		{Dir: "/img", Path: "/etc/shadow", UID: 2},
		{Dir: "/img", Path: "/img/../x", UID: 3},
		{Dir: "img", Path: "img/y", UID: 4},
	}}
	if err := MakeDir(state); err != nil {
		t.Fatal(err)
	}
	if err := SaveLabelled(state, l); err != nil {
		t.Fatal(err)
	}
	back, err := LoadLabelled(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Files) != 1 || back.Files[0].Path != "/img/a.img" {
		t.Errorf("LoadLabelled kept %+v, want only /img/a.img", back.Files)
	}
}

// FuzzDecode: a record read back names only absolute clean directories,
// and saves back to the same record.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"domain":"dm0=","dirs":["L3Zhci9saWIvbGlidmlydC9pbWFnZXM=","L2Rldg=="]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		for _, d := range r.Dirs {
			if !filepath.IsAbs(d) || filepath.Clean(d) != d {
				t.Fatalf("Decode accepted directory %q", d)
			}
		}
		state := t.TempDir()
		if err := Save(state, r); err != nil {
			t.Fatal(err)
		}
		back, err := Load(state, r.Domain)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(r, back); d != "" {
			t.Fatalf("round trip differs:\n%s", d)
		}
	})
}

// FuzzLoadLabelled: an entry kept names a file directly inside its
// absolute clean directory.
func FuzzLoadLabelled(f *testing.F) {
	f.Add([]byte(`{"files":[{"dir":"L2ltZw==","path":"L2ltZy9hLmltZw==","uid":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		state := t.TempDir()
		if err := MakeDir(state); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(state, dirName, labelledName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, _ := LoadLabelled(state)
		for _, fl := range l.Files {
			if filepath.Dir(fl.Path) != fl.Dir || !filepath.IsAbs(fl.Path) || filepath.Clean(fl.Path) != fl.Path {
				t.Fatalf("LoadLabelled kept %+v", fl)
			}
		}
	})
}

// TestSymlinksInTheStateDirectory: a symlink planted at STATE/inventory
// (to a directory an attacker reads, or /etc) is never followed: no
// writer creates, replaces or removes anything where it leads, and no
// reader reads there. A symlink at a record's own name is replaced by the
// record, not written through.
func TestSymlinksInTheStateDirectory(t *testing.T) {
	state, elsewhere := t.TempDir(), t.TempDir()
	planted := filepath.Join(elsewhere, NameOf("vm1"))
	if err := os.WriteFile(planted, []byte(`{"domain":"vm1","dirs":["/elsewhere"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(state, "inventory")); err != nil {
		t.Fatal(err)
	}
	r := New("vm1", "boot", 64055, 994, []string{"/a"})
	if err := Save(state, r); err == nil {
		t.Errorf("Save through a symlinked inventory directory succeeded")
	}
	if err := SaveLabelled(state, &Labelled{Files: []File{}}); err == nil {
		t.Errorf("SaveLabelled through a symlinked inventory directory succeeded")
	}
	if err := Remove(state, "vm1"); err == nil {
		t.Errorf("Remove through a symlinked inventory directory succeeded")
	}
	if got, err := Load(state, "vm1"); err == nil || got != nil {
		t.Errorf("Load through a symlinked inventory directory = %+v, %v; want an error", got, err)
	}
	if _, err := List(state); err == nil {
		t.Errorf("List through a symlinked inventory directory succeeded")
	}
	ents, err := os.ReadDir(elsewhere)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != NameOf("vm1") {
		t.Errorf("the symlink's target holds %v, want only the planted file", ents)
	}
	if b, _ := os.ReadFile(planted); string(b) != `{"domain":"vm1","dirs":["/elsewhere"]}` {
		t.Errorf("the planted file now holds %q", b)
	}

	// A symlink at a record's name: Save replaces it, Load does not
	// follow one.
	state = t.TempDir()
	if err := os.Mkdir(filepath.Join(state, "inventory"), 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(state, "inventory", NameOf("vm1"))
	if err := os.Symlink(planted, link); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(state, "vm1"); err == nil || got != nil {
		t.Errorf("Load of a symlinked record = %+v, %v; want an error", got, err)
	}
	if err := Save(state, r); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("after Save the record is %v (%v), want a regular file", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(planted); string(b) != `{"domain":"vm1","dirs":["/elsewhere"]}` {
		t.Errorf("Save wrote through the symlink: the planted file now holds %q", b)
	}
}
