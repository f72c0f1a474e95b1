package acl

import (
	"fmt"
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
			added, c := addUserExec(a, uid, nil)
			if err := added.Valid(); err != nil {
				t.Fatalf("addUserExec(%s, %d) = %s, invalid: %v", a, uid, added, err)
			}
			if got := undo(added, c, nil); !equal(got, a) {
				t.Fatalf("undo(addUserExec(%s, %d)) = %s", a, uid, got)
			}
		}
		for _, want := range []Perm{Read, Write, Exec, Read | Write | Exec} {
			a.Allowed(1, 2, uid, []uint32{uid, 2}, want)
		}
	})
}

// byteSource hands out fuzz bytes; zeros once they run out, so every
// input decodes to something.
type byteSource []byte

func (s *byteSource) next() byte {
	if len(*s) == 0 {
		return 0
	}
	b := (*s)[0]
	*s = (*s)[1:]
	return b
}

// genACL builds a valid ACL from fuzz bytes: any perms on user::, group::
// and other::, named users and groups from a small id set that overlaps
// the uids being granted, and a mask (required with named entries,
// optional without), with or without x.
func genACL(s *byteSource) ACL {
	a := ACL{{Tag: UserObj, Perm: Perm(s.next()) & permAll}}
	named := false
	for _, id := range []uint32{1, 2, 3, 10} {
		if b := s.next(); b&8 != 0 {
			a = append(a, Entry{Tag: User, ID: id, Perm: Perm(b) & permAll})
			named = true
		}
	}
	a = append(a, Entry{Tag: GroupObj, Perm: Perm(s.next()) & permAll})
	for _, id := range []uint32{1, 20} {
		if b := s.next(); b&8 != 0 {
			a = append(a, Entry{Tag: Group, ID: id, Perm: Perm(b) & permAll})
			named = true
		}
	}
	if b := s.next(); named || b&8 != 0 {
		a = append(a, Entry{Tag: Mask, Perm: Perm(b) & permAll})
	}
	return append(a, Entry{Tag: Other, Perm: Perm(s.next()) & permAll})
}

// FuzzGrantUndo checks the sharing rules of Change on random ACLs: grants
// for uids 1-3 are made and released in any interleaving, each with the
// other grants still in effect passed as active (as the hook passes them
// from its journal). Invariants: every ACL stays valid; every grant in
// effect lets its uid search (ACL.Allowed); undo is idempotent; once all
// grants are released the ACL is exactly the initial one.
func FuzzGrantUndo(f *testing.F) {
	f.Add([]byte{7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1, 2})                    // minimal 0700: A, B, undo A, undo B
	f.Add([]byte{7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 1})                    // minimal 0700: A, B, undo B, undo A
	f.Add([]byte{7, 13, 0, 0, 0, 5, 0, 15, 4, 0, 1, 2, 1, 2, 0})               // restrictive mask, A B A B
	f.Add([]byte{7, 0, 9, 0, 0, 5, 0, 0, 12, 0, 1, 2, 3, 1, 3, 2})             // u:2:--x masked off
	f.Add([]byte{7, 0, 0, 0, 0, 1, 0, 0, 12, 0, 1, 2, 1, 3, 2, 3})             // mask without named entries, g::--x
	f.Add([]byte{7, 15, 15, 15, 15, 7, 15, 15, 15, 7, 1, 2, 3, 0x81, 0x42, 3}) // everything
	f.Fuzz(func(t *testing.T, data []byte) {
		src := byteSource(data)
		initial := genACL(&src)
		if err := initial.Valid(); err != nil {
			t.Fatalf("genACL built an invalid ACL %s: %v", initial, err)
		}
		const fileUID, fileGID = 1000, 1000 // owner and group of none of the subjects
		cur := initial
		grants := map[uint32]Change{} // in effect, by uid
		activeFor := func(uid uint32) []Change {
			var out []Change
			for _, u := range []uint32{1, 2, 3} {
				// Grants that changed nothing are not the hook's: it does
				// not journal them, so they are never passed as active.
				if c, ok := grants[u]; ok && u != uid && c.Changed() {
					out = append(out, c)
				}
			}
			return out
		}
		check := func(what string) {
			t.Helper()
			if err := cur.Valid(); err != nil {
				t.Fatalf("after %s: invalid ACL %s: %v", what, cur, err)
			}
			for uid := range grants {
				if !cur.Allowed(fileUID, fileGID, uid, nil, Exec) {
					t.Fatalf("initial %s, after %s: uid %d holds a grant but cannot search %s", initial, what, uid, cur)
				}
			}
		}
		release := func(uid uint32) {
			t.Helper()
			c := grants[uid]
			delete(grants, uid)
			act := activeFor(uid)
			next := undo(cur, c, act)
			if again := undo(next, c, act); !equal(again, next) {
				t.Fatalf("undo of %+v not idempotent: %s, then %s", c, next, again)
			}
			cur = next
			check(fmt.Sprintf("undo uid %d (%+v)", uid, c))
		}
		for len(src) > 0 {
			b := src.next()
			uid := uint32(b%3) + 1
			if _, ok := grants[uid]; ok {
				release(uid)
				continue
			}
			next, c := addUserExec(cur, uid, activeFor(uid))
			if !c.Changed() && !equal(next, cur) {
				t.Fatalf("addUserExec(%s, %d) changed the ACL to %s but reports no change", cur, uid, next)
			}
			if !c.Changed() {
				// The grant is not ours (the administrator's entry), as
				// in the hook: nothing is recorded, nothing undone, but
				// its search must still survive our releases.
				c = Change{UID: uid}
			}
			grants[uid], cur = c, next
			check(fmt.Sprintf("grant uid %d (%+v)", uid, c))
		}
		for _, uid := range []uint32{3, 1, 2} {
			if _, ok := grants[uid]; ok {
				release(uid)
			}
		}
		if !equal(cur, initial) {
			t.Fatalf("after releasing every grant: %s, want the initial %s", cur, initial)
		}
	})
}
