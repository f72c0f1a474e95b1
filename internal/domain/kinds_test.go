package domain

import (
	"go/ast"
	goparser "go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// declaredKinds returns every constant of type Kind declared in this
// package's non-test files, by name, with its value: read from the source,
// so a constant added without a table row cannot slip past.
func declaredKinds(t *testing.T) map[string]Kind {
	t.Helper()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	out := map[string]Kind{}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := goparser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Kind" {
					continue
				}
				for i, name := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("Kind constant %s is not a string literal", name.Name)
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[name.Name] = Kind(v)
				}
			}
		}
	}
	return out
}

// TestKindTable checks that every declared kind has its row in the kinds
// table, with at least one inode type, and that the table holds nothing
// else.
func TestKindTable(t *testing.T) {
	declared := declaredKinds(t)
	if len(declared) < 10 {
		t.Fatalf("found %d Kind constants in the source, want all of them: the scan is broken", len(declared))
	}
	names := map[Kind]string{}
	for name, k := range declared {
		if other, dup := names[k]; dup {
			t.Errorf("%s and %s are both %q", name, other, k)
		}
		names[k] = name
		if _, ok := kinds[k]; !ok {
			t.Errorf("%s (%q) has no row in the kinds table", name, k)
			continue
		}
		if k.Types() == 0 {
			t.Errorf("%s (%q): row allows no inode type", name, k)
		}
	}
	for k := range kinds {
		if _, ok := names[k]; !ok {
			t.Errorf("table row %q has no Kind constant", k)
		}
	}
}

func TestKindFacts(t *testing.T) {
	tests := []struct {
		name string
		got  func(Kind) bool
		want []Kind
	}{
		{"HeaderNamesFiles", Kind.HeaderNamesFiles, []Kind{KindDisk, KindCdrom, KindFloppy, KindLun, KindBacking}},
		{"MiscDevice", Kind.MiscDevice, []Kind{KindSCSIHost, KindSEV, KindSGX, KindHostdevChar}},
		{"PipePair", Kind.PipePair, []Kind{KindChardevPipe}},
		{"ForcedReadOnly", Kind.ForcedReadOnly, []Kind{KindBacking, KindCdrom}},
		{"BootLoaded", Kind.BootLoaded, []Kind{KindKernel, KindInitrd}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := map[Kind]bool{}
			for _, k := range tt.want {
				want[k] = true
			}
			for k := range kinds {
				if got := tt.got(k); got != want[k] {
					t.Errorf("%s(%q) = %v, want %v", tt.name, k, got, want[k])
				}
			}
		})
	}
	if Kind("no-such-kind").Types() != 0 || Kind("no-such-kind").HeaderNamesFiles() {
		t.Error("an unknown kind has facts")
	}
}
