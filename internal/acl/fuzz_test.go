package acl

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse feeds arbitrary xattr values to Parse. Invariants: no panic;
// whatever Parse accepts is Valid, re-encodes to the same length and
// round-trips; granting and undoing search for any uid gives back the
// same ACL; Allowed never panics on it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"u::rwx,g::r-x,o::---",
		"u::rwx,u:1000:r-x,g::r-x,g:100:rw-,m::rwx,o::r-x",
		"u::rwx,u:107:r--,g::---,m::r--,o::---",
		"u::---,g::---,m::---,o::---",
	} {
		f.Add(mustText(f, s).Bytes(), uint32(107))
	}
	f.Add([]byte{2, 0, 0, 0}, uint32(0))
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, uid uint32) {
		a, err := Parse(b)
		if err != nil {
			return
		}
		if err := a.Valid(); err != nil {
			t.Fatalf("Parse(%x) accepted an invalid ACL: %v", b, err)
		}
		enc := a.Bytes()
		if len(enc) != len(b) {
			t.Fatalf("Bytes() of Parse(%x) has %d bytes, want %d", b, len(enc), len(b))
		}
		back, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse(Bytes()) of %s: %v", a, err)
		}
		if diff := cmp.Diff(a, back); diff != "" {
			t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
		}
		if uid != undefinedID {
			added, c := addUserExec(a, uid)
			if err := added.Valid(); err != nil {
				t.Fatalf("addUserExec(%s, %d) = %s, invalid: %v", a, uid, added, err)
			}
			if got := undo(added, c); !equal(got, a) {
				t.Fatalf("undo(addUserExec(%s, %d)) = %s", a, uid, got)
			}
		}
		for _, want := range []Perm{Read, Write, Exec, Read | Write | Exec} {
			a.Allowed(1, 2, uid, []uint32{uid, 2}, want)
		}
	})
}
