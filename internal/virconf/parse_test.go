package virconf

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/testenv"
)

func str(s string) Value                    { return Value{Type: String, Str: s} }
func num(n int64) Value                     { return Value{Type: Int, Int: n, Signed: n < 0} }
func list(vs ...Value) Value                { return Value{Type: List, List: append([]Value{}, vs...)} }
func ent(k string, v Value, line int) Entry { return Entry{Key: k, Value: v, Line: line} }

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Entry
	}{
		{"empty", "", nil},
		{"only blanks", "  \n\t\n\r\n", nil},
		{"only comments", "# a\n#b = 1\n   # indented\n", nil},
		{"double quoted", `user = "qemu"`, []Entry{ent("user", str("qemu"), 1)}},
		{"single quoted", `user = 'qemu'`, []Entry{ent("user", str("qemu"), 1)}},
		{"quotes of the other kind inside", `a = "it's"` + "\n" + `b = 'say "hi"'`,
			[]Entry{ent("a", str("it's"), 1), ent("b", str(`say "hi"`), 2)}},
		{"no escapes", `a = "C:\path\"`, []Entry{ent("a", str(`C:\path\`), 1)}},
		{"empty string", `a = ""` + "\n", []Entry{ent("a", str(""), 1)}},
		{"triple quoted over lines", "a = \"\"\"one\n\"two\"\nthree\"\"\"\nb = 1\n",
			[]Entry{ent("a", str("one\n\"two\"\nthree"), 1), ent("b", num(1), 4)}},
		{"integers", "a = 0\nb = 42\nc = -7\nd = +3\ne = -0\n",
			[]Entry{ent("a", num(0), 1), ent("b", num(42), 2), ent("c", num(-7), 3), ent("d", num(3), 4),
				ent("e", Value{Type: Int, Signed: true}, 5)}},
		{"int64 limits", "a = 9223372036854775807\nb = -9223372036854775808\n",
			[]Entry{ent("a", num(math.MaxInt64), 1), ent("b", num(math.MinInt64), 2)}},
		{"uint64 max is kept as bits", "a = 18446744073709551615\n",
			[]Entry{ent("a", Value{Type: Int, Int: -1}, 1)}},
		{"trailing comment", "a = 1 # one\nb = \"x\"# two\n",
			[]Entry{ent("a", num(1), 1), ent("b", str("x"), 2)}},
		{"hash inside string is not a comment", `a = "x # y"`, []Entry{ent("a", str("x # y"), 1)}},
		{"semicolons", "a = 1; b = 2 ;c = 3;\n",
			[]Entry{ent("a", num(1), 1), ent("b", num(2), 1), ent("c", num(3), 1)}},
		{"blanks around", "\t  a\t=\t1  \n", []Entry{ent("a", num(1), 1)}},
		{"no blanks", "a=1\n", []Entry{ent("a", num(1), 1)}},
		{"crlf", "a = 1\r\nb = 'x'\r\n", []Entry{ent("a", num(1), 1), ent("b", str("x"), 2)}},
		{"names", "A_1 = 1\nsnake_case_9 = 2\n", []Entry{ent("A_1", num(1), 1), ent("snake_case_9", num(2), 2)}},
		{"empty list", "a = []\nb = [ ]\nc = [\n]\n",
			[]Entry{ent("a", list(), 1), ent("b", list(), 2), ent("c", list(), 3)}},
		{"list", `a = [ "x", 'y', 3 ]`, []Entry{ent("a", list(str("x"), str("y"), num(3)), 1)}},
		{"list trailing comma", `a = [ "x", ]`, []Entry{ent("a", list(str("x")), 1)}},
		{"multi-line list", "a = [\n  \"/dev/null\", \"/dev/full\",\n  \"/dev/kvm\"\n]\nb = 1\n",
			[]Entry{ent("a", list(str("/dev/null"), str("/dev/full"), str("/dev/kvm")), 1), ent("b", num(1), 5)}},
		{"nested list", "a = [ [1, 2], [] ]", []Entry{ent("a", list(list(num(1), num(2)), list()), 1)}},
		{"duplicates kept in order", "a = 1\na = 2\n", []Entry{ent("a", num(1), 1), ent("a", num(2), 2)}},
		{"six quotes at end is not triple", `a = """"""` + "\n", []Entry{ent("a", str(""), 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, f.Entries()); diff != "" {
				t.Errorf("Parse(%q) entries (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		line     int
		contains string
		is       error
	}{
		{"missing equals", "a = 1\n\nuser \"qemu\"\n", 3, `expected '=' after name "user"`, ErrSyntax},
		{"name starts with digit", "1a = 1", 1, "expected a name", ErrSyntax},
		{"name with dash", "dynamic-ownership = 1", 1, `expected '=' after name "dynamic"`, ErrSyntax},
		{"missing value", "a =\n", 1, "expected a value", ErrSyntax},
		{"comment instead of value", "a = # none\n", 1, "expected a value, found '#'", ErrSyntax},
		{"missing value at eof", "a =", 1, "expected a value, found end of file", ErrSyntax},
		{"bare word value", "a = yes", 1, `expected a value, found 'y'`, ErrSyntax},
		{"unterminated double", "a = \"abc\nb = 1\n", 1, "unterminated string", ErrSyntax},
		{"unterminated single", "\n\na = 'abc", 3, "unterminated string", ErrSyntax},
		{"unterminated triple", "a = \"\"\"abc\n\ndef\n", 1, "unterminated triple-quoted", ErrSyntax},
		{"six quotes at eof", `a = """"""`, 1, "expected end of line or ';'", ErrSyntax},
		{"sign without digits", "a = -", 1, "unterminated number", ErrSyntax},
		{"hex", "a = 0x10", 1, "expected end of line or ';', found 'x'", ErrSyntax},
		{"junk after value", "a = 'x' y", 1, "expected end of line or ';'", ErrSyntax},
		{"two statements on a line", "a = 1 b = 2", 1, "expected end of line or ';'", ErrSyntax},
		{"list not closed", "a = [ 1, 2\n", 1, "list is not closed", ErrSyntax},
		{"list missing comma", "a = [\n 1\n 2 ]", 3, "expected ',' or ']' in list", ErrSyntax},
		{"list leading comma", "a = [ , 1 ]", 1, "expected a value, found ','", ErrSyntax},
		{"comment inside list", "a = [\n  \"x\", # why\n  \"y\" ]", 2, "comment", ErrSyntax},
		{"comment after list element", "a = [\n  \"x\" # why\n ]", 2, "comment inside a list", ErrSyntax},
		{"number too large", "a = 18446744073709551616", 1, "does not fit", ErrBadNumber},
		{"number too small", "a = -9223372036854775809", 1, "below", ErrBadNumber},
		{"too deep", "a = " + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), 1, "nested", ErrTooDeep},
		{"nul byte", "a = 1\x00", 1, "byte 0x00", ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error", tt.in, f.Entries())
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %v is %T, want *SyntaxError", tt.in, err, err)
			}
			if se.Line != tt.line {
				t.Errorf("Parse(%q) error line = %d, want %d (%v)", tt.in, se.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.in, err, tt.contains)
			}
			if want := "line " + strconv.Itoa(tt.line) + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Parse(%q) error = %q, want prefix %q", tt.in, err, want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("Parse(%q) error = %v, want errors.Is %v", tt.in, err, tt.is)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	big := make([]byte, MaxSize+1)
	for i := range big {
		big[i] = '\n'
	}
	if _, err := Parse(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse(%d bytes) error = %v, want ErrTooLarge", len(big), err)
	}
	if _, err := Parse(big[:MaxSize]); err != nil {
		t.Errorf("Parse(%d blank bytes) error = %v, want nil", MaxSize, err)
	}
	many := "a = [" + strings.Repeat("1,", MaxValues) + "]"
	if _, err := Parse([]byte(many)); !errors.Is(err, ErrTooMany) {
		t.Errorf("Parse(list of %d) error = %v, want ErrTooMany", MaxValues, err)
	}
	deep := "a = " + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if _, err := Parse([]byte(deep)); err != nil {
		t.Errorf("Parse(lists nested %d deep) error = %v, want nil", MaxDepth, err)
	}
}

// TestLineNumbersLargeFile checks line numbers stay right far into a file
// and that numbering does not go quadratic (this would take minutes).
func TestLineNumbersLargeFile(t *testing.T) {
	var b strings.Builder
	n := MaxValues - 1
	for i := 0; i < n; i++ {
		b.WriteString("k = 1 # padding padding padding\n")
	}
	b.WriteString("bad line\n")
	_, err := Parse([]byte(b.String()))
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != n+1 {
		t.Fatalf("Parse(large) error = %v, want a SyntaxError at line %d", err, n+1)
	}
	f, err := Parse([]byte(strings.Repeat("k = 1\n", 1000) + "last = 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := f.Lookup("last"); e.Line != 1001 {
		t.Errorf("line of last = %d, want 1001", e.Line)
	}
}

func libvirtQEMUConf(t *testing.T) []byte {
	t.Helper()
	p := filepath.Join(testenv.SharedDir(t), "reference", "libvirt-9.0.0", "qemu.conf")
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("libvirt's qemu.conf not found at %s: the shared directory lacks reference/libvirt-9.0.0", p)
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestLibvirtQEMUConf(t *testing.T) {
	data := libvirtQEMUConf(t)
	f, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(libvirt qemu.conf) error: %v", err)
	}
	if keys := keys(f); len(keys) != 0 {
		t.Errorf("Parse(libvirt qemu.conf) keys = %q, want none (every setting is commented out)", keys)
	}

	// Uncomment a few settings, including the multi-line list, as an admin
	// would, and add a later duplicate that must not win.
	text := string(data)
	for _, r := range []struct{ old, new string }{
		{`#user = "@QEMU_USER@"`, `user = "+107"`},
		{`#group = "@QEMU_GROUP@"`, `group = 'kvm'`},
		{"#dynamic_ownership = 1", "dynamic_ownership = 0"},
		{"#cgroup_device_acl = [\n#    \"/dev/null\", \"/dev/full\", \"/dev/zero\",\n#    \"/dev/random\", \"/dev/urandom\",\n#    \"/dev/ptmx\", \"/dev/kvm\"\n#]",
			"cgroup_device_acl = [\n    \"/dev/null\", \"/dev/full\", \"/dev/zero\",\n    \"/dev/random\", \"/dev/urandom\",\n    \"/dev/ptmx\", \"/dev/kvm\"\n]"},
	} {
		if !strings.Contains(text, r.old) {
			t.Fatalf("libvirt qemu.conf has no %q", r.old)
		}
		text = strings.Replace(text, r.old, r.new, 1)
	}
	text += "user = \"root\"\n"
	f, err = Parse([]byte(text))
	if err != nil {
		t.Fatalf("Parse(edited qemu.conf) error: %v", err)
	}
	if diff := cmp.Diff([]string{"user", "group", "dynamic_ownership", "cgroup_device_acl"}, keys(f)); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	if s, _, err := f.String("user"); err != nil || s != "+107" {
		t.Errorf(`String("user") = %q, %v; want "+107" (first occurrence wins)`, s, err)
	}
	if e, _ := f.Lookup("user"); e.Line != 519 {
		t.Errorf("user at line %d, want 519", e.Line)
	}
	if s, _, err := f.String("group"); err != nil || s != "kvm" {
		t.Errorf(`String("group") = %q, %v; want "kvm"`, s, err)
	}
	if b, ok, err := f.Bool("dynamic_ownership"); err != nil || !ok || b {
		t.Errorf(`Bool("dynamic_ownership") = %v, %v, %v; want false, true, nil`, b, ok, err)
	}
	acl, _, err := f.Strings("cgroup_device_acl")
	want := []string{"/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/ptmx", "/dev/kvm"}
	if err != nil || !cmp.Equal(acl, want) {
		t.Errorf(`Strings("cgroup_device_acl") = %q, %v; want %q`, acl, err, want)
	}
}
