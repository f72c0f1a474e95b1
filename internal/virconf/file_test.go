package virconf

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const getters = `
s = "text"
s = "second"
i = 42
neg = -3
zero = 0
one = +1
two = 2
minus_zero = -0
huge = 18446744073709551615
l = [ "a", 'b' ]
mixed = [ "a", 1 ]
empty = []
`

func mustParse(t *testing.T, in string) *File {
	t.Helper()
	f, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

// keys returns the distinct names set in f, in order of first appearance.
func keys(f *File) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range f.Entries() {
		if !seen[e.Key] {
			seen[e.Key] = true
			out = append(out, e.Key)
		}
	}
	return out
}

func TestLookupFirstOccurrenceWins(t *testing.T) {
	f := mustParse(t, getters)
	e, ok := f.Lookup("s")
	if !ok || e.Value.Str != "text" {
		t.Errorf(`Lookup("s") = %+v, %v; want "text", true`, e, ok)
	}
	if _, ok := f.Lookup("missing"); ok {
		t.Errorf(`Lookup("missing") ok = true, want false`)
	}
	want := []string{"s", "i", "neg", "zero", "one", "two", "minus_zero", "huge", "l", "mixed", "empty"}
	if diff := cmp.Diff(want, keys(f)); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}

func TestString(t *testing.T) {
	f := mustParse(t, getters)
	tests := []struct {
		key    string
		want   string
		ok     bool
		errSub string
	}{
		{"s", "text", true, ""},
		{"missing", "", false, ""},
		{"i", "", true, "line 4: i: expected a string, got integer"},
		{"l", "", true, "expected a string, got list"},
	}
	for _, tt := range tests {
		got, ok, err := f.String(tt.key)
		if got != tt.want || ok != tt.ok || !errMatches(err, tt.errSub) {
			t.Errorf("String(%q) = %q, %v, %v; want %q, %v, error containing %q", tt.key, got, ok, err, tt.want, tt.ok, tt.errSub)
		}
	}
}

func TestBool(t *testing.T) {
	f := mustParse(t, getters)
	tests := []struct {
		key    string
		want   bool
		ok     bool
		errSub string
	}{
		{"zero", false, true, ""},
		{"one", true, true, ""},
		{"missing", false, false, ""},
		{"two", false, true, "two: expected 0 or 1, got 2"},
		{"neg", false, true, "expected 0 or 1, got -3"},
		{"minus_zero", false, true, "expected 0 or 1, got 0"}, // libvirt: signed is never a bool
		{"s", false, true, `expected 0 or 1, got string "text"`},
		{"l", false, true, "expected 0 or 1, got list"},
	}
	for _, tt := range tests {
		got, ok, err := f.Bool(tt.key)
		if got != tt.want || ok != tt.ok || !errMatches(err, tt.errSub) {
			t.Errorf("Bool(%q) = %v, %v, %v; want %v, %v, error containing %q", tt.key, got, ok, err, tt.want, tt.ok, tt.errSub)
		}
	}
}

func TestInt(t *testing.T) {
	f := mustParse(t, getters)
	tests := []struct {
		key    string
		want   int64
		ok     bool
		errSub string
	}{
		{"i", 42, true, ""},
		{"neg", -3, true, ""},
		{"one", 1, true, ""},
		{"missing", 0, false, ""},
		{"huge", 0, true, "huge: 18446744073709551615 is out of range"},
		{"s", 0, true, "expected an integer, got string"},
	}
	for _, tt := range tests {
		got, ok, err := f.Int(tt.key)
		if got != tt.want || ok != tt.ok || !errMatches(err, tt.errSub) {
			t.Errorf("Int(%q) = %v, %v, %v; want %v, %v, error containing %q", tt.key, got, ok, err, tt.want, tt.ok, tt.errSub)
		}
	}
	e, _ := f.Lookup("huge")
	if u, ok := e.Value.Uint(); !ok || u != 1<<64-1 {
		t.Errorf("huge.Uint() = %d, %v; want max uint64, true", u, ok)
	}
	e, _ = f.Lookup("neg")
	if _, ok := e.Value.Uint(); ok {
		t.Errorf("neg.Uint() ok = true, want false")
	}
}

func TestStrings(t *testing.T) {
	f := mustParse(t, getters)
	tests := []struct {
		key    string
		want   []string
		ok     bool
		errSub string
	}{
		{"l", []string{"a", "b"}, true, ""},
		{"s", []string{"text"}, true, ""},
		{"empty", []string{}, true, ""},
		{"missing", nil, false, ""},
		{"mixed", nil, true, "mixed: expected a list of strings, element 2 is 1"},
		{"i", nil, true, "expected a string or list of strings, got integer"},
	}
	for _, tt := range tests {
		got, ok, err := f.Strings(tt.key)
		if !cmp.Equal(got, tt.want) || ok != tt.ok || !errMatches(err, tt.errSub) {
			t.Errorf("Strings(%q) = %q, %v, %v; want %q, %v, error containing %q", tt.key, got, ok, err, tt.want, tt.ok, tt.errSub)
		}
	}
}

// errMatches reports whether err is nil when sub is empty, or is an
// ErrType whose text contains sub.
func errMatches(err error, sub string) bool {
	if sub == "" {
		return err == nil
	}
	return err != nil && errors.Is(err, ErrType) && strings.Contains(err.Error(), sub)
}
