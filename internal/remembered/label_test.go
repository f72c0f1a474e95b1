package remembered

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseLabel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Owner
		err  bool
	}{
		{"+1000:+100", Owner{1000, 100}, false},
		{"+0:+0", Owner{0, 0}, false},
		{"0:0", Owner{0, 0}, false},
		{"+1000:+100\x00", Owner{1000, 100}, false},
		{"1000", Owner{}, true},
		{"+:+1", Owner{}, true},
		{"alice:users", Owner{}, true},
		{"+4294967296:+0", Owner{}, true},
		{"", Owner{}, true},
	} {
		got, err := ParseLabel(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseLabel(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrBadLabel) {
			t.Errorf("ParseLabel(%q) error %v does not wrap ErrBadLabel", tc.in, err)
		}
	}
}

func FuzzParseLabel(f *testing.F) {
	f.Add("+1000:+100")
	f.Add("+0:+0\x00")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseLabel(s)
		if err != nil {
			return
		}
		// Whatever parsed prints back as the same ids.
		if back, err := ParseLabel(o.String()); err != nil || back != o {
			t.Errorf("ParseLabel(%q) = %v, which does not round-trip (%v, %v)", s, o, back, err)
		}
	})
}

// TestLabel: libvirt's remembered owner is read only with an outstanding
// labelling, and never through a symlink.
func TestLabel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("trusted.* xattrs need CAP_SYS_ADMIN")
	}
	dir := t.TempDir()
	set := func(name string, kv map[string]string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for k, v := range kv {
			if err := unix.Setxattr(p, k, []byte(v), 0); err != nil {
				t.Skipf("no trusted xattrs on %s: %v", dir, err)
			}
		}
		return p
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(set("target", map[string]string{XattrDAC: "+5:+6", XattrRefDAC: "1"}), link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		want Owner
		ok   bool
	}{
		{"labelled", set("a", map[string]string{XattrDAC: "+1000:+100", XattrRefDAC: "2"}), Owner{1000, 100}, true},
		{"no refs", set("b", map[string]string{XattrDAC: "+1000:+100"}), Owner{}, false},
		{"refs zero", set("c", map[string]string{XattrDAC: "+1000:+100", XattrRefDAC: "0"}), Owner{}, false},
		{"bad label", set("d", map[string]string{XattrDAC: "alice", XattrRefDAC: "1"}), Owner{}, false},
		{"none", set("e", nil), Owner{}, false},
		{"symlink", link, Owner{}, false},
		{"missing", filepath.Join(dir, "gone"), Owner{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Label(tc.path)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Label(%s) = %v, %v; want %v, %v", tc.path, got, ok, tc.want, tc.ok)
			}
		})
	}
}
