package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// FuzzDecode feeds arbitrary bytes to Decode, the parser of the state file
// (which a crash, a full disk or an admin's editor can leave in any shape).
// Invariants: no panic; an accepted state re-encodes, decodes again, and
// reaches a fixed point after one round (the raw ACL is re-indented once);
// every entry of an accepted state is reachable by its key; input over
// MaxStateSize is refused before parsing.
func FuzzDecode(f *testing.F) {
	seed, err := sample().Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"version":1,"entries":[]}`))
	f.Add([]byte(`{"version":1,"entries":null}`))
	f.Add([]byte(`{"version":1,"entries":[{"path":"/a","dev":1,"ino":2,"uid":0,"gid":0,"target_uid":1,"target_gid":1,"acl":null,"holders":null,"created_boot_id":""}]}`))
	f.Add([]byte(`{"version":1,"entries":[{"path":"/a\u0000b","acl":{ "x" : [1, 2] }}]}`))
	f.Add([]byte(`{"version":1,"entries":[{"path":"/a"},{"path":"/b","acl":{}}]}`))
	f.Add([]byte(`{"version":1,"entries":[]}]`))
	f.Add([]byte(`{"VERSION":1,"Entries":[{"PATH":"/\xff"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Decode(b)
		if err != nil {
			if st != nil {
				t.Fatalf("Decode returned a state along with error %v", err)
			}
			return
		}
		if len(b) > MaxStateSize {
			t.Fatalf("Decode accepted %d bytes, over MaxStateSize", len(b))
		}
		for _, e := range st.mem {
			if st.Lookup(e.Key()) != e {
				t.Fatalf("entry %s not reachable by its key %q", e.Path, e.Key())
			}
		}
		n := len(st.mem)
		enc1, err := st.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded state: %v", err)
		}
		st2, err := Decode(enc1)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(x))): %v\n%s", err, enc1)
		}
		if len(st2.mem) != n {
			t.Fatalf("round trip changed the entry count: %d, then %d", n, len(st2.mem))
		}
		enc2, err := st2.Encode()
		if err != nil {
			t.Fatalf("second Encode: %v", err)
		}
		st3, err := Decode(enc2)
		if err != nil {
			t.Fatalf("third Decode: %v", err)
		}
		enc3, err := st3.Encode()
		if err != nil {
			t.Fatalf("third Encode: %v", err)
		}
		if !bytes.Equal(enc2, enc3) {
			t.Fatalf("Encode is not a fixed point after one round:\n%s\n---\n%s", enc2, enc3)
		}
		for i, e := range st2.mem {
			if st3.mem[i].Key() != e.Key() || st3.mem[i].Path != e.Path {
				t.Fatalf("entry %d changed across a round trip: %s %s, then %s %s", i, e.Key(), e.Path, st3.mem[i].Key(), st3.mem[i].Path)
			}
		}
	})
}

// FuzzDecodeEntry feeds arbitrary bytes to decodeEntry, the parser of one
// stored entry (a damaged disk can hand it anything). Invariants: no
// panic, every error is ErrDamaged; an accepted entry re-encodes within the
// size bound to bytes that decode to the same entry, and encoding is a
// fixed point from there.
func FuzzDecodeEntry(f *testing.F) {
	for _, e := range sample().mem {
		b, err := encodeEntry(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	raw, err := encodeEntry(&Entry{Path: "/a/\xff", Dev: 1 << 63, Ino: 2, ACL: json.RawMessage(`{}`), Birth: -5, Generation: 7, HandleType: -1, Handle: []byte{1, 2}, MountID: 31, Holders: []Holder{{}, {Domain: "d"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	withPerms, err := encodeEntry(&Entry{Path: "/p", Perms: &owner.Perms{Mode: 0o4600, ACL: []byte{2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withPerms)
	f.Add([]byte{entryFormat})
	f.Add([]byte{entryFormat, 2, '/', 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(append(raw, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("decodeEntry error %v is not ErrDamaged", err)
			}
			return
		}
		enc, err := encodeEntry(e)
		if err != nil {
			t.Fatalf("encodeEntry of a decoded entry: %v", err)
		}
		e2, err := decodeEntry(enc)
		if err != nil {
			t.Fatalf("decodeEntry(encodeEntry(decodeEntry(x))): %v\n%s", err, enc)
		}
		if diff := cmp.Diff(e, e2); diff != "" {
			t.Fatalf("round trip changed the entry (-first +second):\n%s", diff)
		}
		enc2, err := encodeEntry(e2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point:\n%s\n---\n%s", enc, enc2)
		}
	})
}
