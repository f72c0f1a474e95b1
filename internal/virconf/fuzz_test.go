package virconf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/testenv"
)

// FuzzParse checks that Parse never panics, that every key it reports
// appears in the input at the line it names, and that the typed getters
// agree with Lookup.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "a = 1\n", "user = \"qemu\"\ngroup = 'kvm' # c\n", "a = [\n \"x\",\n 'y', ]\n",
		"a = \"\"\"x\ny\"\"\"\n", "a = -0; b = +5;", "a = [[[]]]", "#c\n a=1\r\n",
		"a = 18446744073709551615", "a = [1 2]", "a = \"\"\"\"\"\"", getters,
	} {
		f.Add([]byte(s))
	}
	// libvirt's own qemu.conf is a good seed when the shared directory is
	// there; the fuzz target runs without it.
	if dir, err := testenv.LookupShared(); err == nil {
		if data, err := os.ReadFile(filepath.Join(dir, "reference", "libvirt-9.0.0", "qemu.conf")); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := Parse(data)
		if err != nil {
			if cf != nil {
				t.Fatalf("Parse returned a File and an error %v", err)
			}
			return
		}
		lines := bytes.Split(data, []byte("\n"))
		for _, e := range cf.Entries() {
			if e.Line < 1 || e.Line > len(lines) {
				t.Fatalf("entry %q at line %d, input has %d lines", e.Key, e.Line, len(lines))
			}
			if !bytes.Contains(lines[e.Line-1], []byte(e.Key)) {
				t.Fatalf("entry %q not found on its line %d: %q", e.Key, e.Line, lines[e.Line-1])
			}
		}
		for _, k := range keys(cf) {
			e, ok := cf.Lookup(k)
			if !ok {
				t.Fatalf("entries have %q but Lookup misses it", k)
			}
			v := e.Value
			if s, _, err := cf.String(k); (err == nil) != (v.Type == String) || (err == nil && s != v.Str) {
				t.Fatalf("String(%q) = %q, %v for %+v", k, s, err, v)
			}
			_, _, _ = cf.Bool(k)
			_, _, _ = cf.Int(k)
			_, _, _ = cf.Strings(k)
		}
	})
}
