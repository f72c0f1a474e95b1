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

func TestGetFirstOccurrenceWins(t *testing.T) {
	f := mustParse(t, getters)
	v, ok := f.Get("s")
	if !ok || v.Str != "text" {
		t.Errorf(`Get("s") = %+v, %v; want "text", true`, v, ok)
	}
	if _, ok := f.Get("missing"); ok {
		t.Errorf(`Get("missing") ok = true, want false`)
	}
	want := []string{"s", "i", "neg", "zero", "one", "two", "minus_zero", "huge", "l", "mixed", "empty"}
	if diff := cmp.Diff(want, f.Keys()); diff != "" {
		t.Errorf("Keys() (-want +got):\n%s", diff)
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
	v, _ := f.Get("huge")
	if u, ok := v.Uint(); !ok || u != 1<<64-1 {
		t.Errorf("huge.Uint() = %d, %v; want max uint64, true", u, ok)
	}
	v, _ = f.Get("neg")
	if _, ok := v.Uint(); ok {
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

func TestRenderRoundTrip(t *testing.T) {
	in := getters + "tq = \"\"\"multi\nline \"quoted\" 'both'\"\"\"\nboth = \"\"\"it's \"x\" y\"\"\"\nnested = [[1,[]],-0]\n"
	f := mustParse(t, in)
	out, err := f.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	g, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Render()) error: %v\n%s", err, out)
	}
	if diff := cmp.Diff(stripLines(f.Entries()), stripLines(g.Entries())); diff != "" {
		t.Errorf("Parse(Render(f)) (-want +got):\n%s\nrendered:\n%s", diff, out)
	}
}

func TestRenderUnrepresentable(t *testing.T) {
	tests := []struct {
		name string
		f    *File
	}{
		{"bad name", &File{entries: []Entry{{Key: "a-b", Value: num(1)}}}},
		{"both quotes ending in double quote", &File{entries: []Entry{{Key: "a", Value: str(`'x"`)}}}},
		{"triple quotes inside", &File{entries: []Entry{{Key: "a", Value: str("x\"\"\"\n")}}}},
		{"no type", &File{entries: []Entry{{Key: "a"}}}},
	}
	for _, tt := range tests {
		if out, err := tt.f.Render(); !errors.Is(err, ErrUnrepresentable) {
			t.Errorf("%s: Render() = %q, %v; want ErrUnrepresentable", tt.name, out, err)
		}
	}
}

func stripLines(es []Entry) []Entry {
	for i := range es {
		es[i].Line = 0
	}
	return es
}
