package domain

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. Invariants: no panic; an
// error is ErrInvalid and one line; a result holds checkInvariants
// (absolute clean NUL-free paths, Kind and From set, one host lookup
// where Path is empty).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.xml"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("<domain/>"))
	f.Add([]byte("<domain><devices><disk type='file'><source file='/a'/><backingStore type='file'><source file='/b'/><backingStore/></backingStore></disk></devices></domain>"))
	f.Add([]byte("<!DOCTYPE x><domain/>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			if d != nil {
				t.Fatalf("Parse returned both a domain and %v", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		checkInvariants(t, "fuzz", d)
	})
}
