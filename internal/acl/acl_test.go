package acl

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// mustText parses the short text form ("u::rwx,u:7:r-x,g::---,m::r-x,o::---",
// numeric ids only) into an ACL, in the given order. Test helper, also
// used to read `getfacl -n -E` output.
func mustText(t testing.TB, s string) ACL {
	t.Helper()
	a, err := parseText(s)
	if err != nil {
		t.Fatalf("parseText(%q): %v", s, err)
	}
	return a
}

func parseText(s string) (ACL, error) {
	var a ACL
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' }) {
		f = strings.TrimSpace(f)
		if f == "" || strings.HasPrefix(f, "#") {
			continue
		}
		parts := strings.Split(f, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("entry %q: want tag:id:perm", f)
		}
		var e Entry
		switch parts[0] {
		case "u", "user":
			e.Tag = UserObj
		case "g", "group":
			e.Tag = GroupObj
		case "m", "mask":
			e.Tag = Mask
		case "o", "other":
			e.Tag = Other
		default:
			return nil, fmt.Errorf("entry %q: unknown tag", f)
		}
		if parts[1] != "" {
			id, err := strconv.ParseUint(parts[1], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("entry %q: %w", f, err)
			}
			switch e.Tag {
			case UserObj:
				e.Tag = User
			case GroupObj:
				e.Tag = Group
			default:
				return nil, fmt.Errorf("entry %q: id on unqualified tag", f)
			}
			e.ID = uint32(id)
		}
		if len(parts[2]) != 3 {
			return nil, fmt.Errorf("entry %q: perm must be 3 chars", f)
		}
		for i, c := range parts[2] {
			if c != '-' && c != rune("rwx"[i]) {
				return nil, fmt.Errorf("entry %q: bad perm", f)
			}
			if c != '-' {
				e.Perm |= Perm(4 >> i)
			}
		}
		a = append(a, e)
	}
	return a, nil
}

func TestParseKernelBytes(t *testing.T) {
	// Captured with `getfattr -e hex -n system.posix_acl_access` after
	// `setfacl -m u:1000:r-x,g:100:rw-` on a 0755 directory.
	raw, err := hex.DecodeString("0200000001000700ffffffff02000500e803000004000500ffffffff080006006400000010000700ffffffff20000500ffffffff")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(raw)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := mustText(t, "u::rwx,u:1000:r-x,g::r-x,g:100:rw-,m::rwx,o::r-x")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
	if b := got.Bytes(); string(b) != string(raw) {
		t.Errorf("Bytes() = %x, want %x", b, raw)
	}
	if s := got.String(); s != "user::rwx,user:1000:r-x,group::r-x,group:100:rw-,mask::rwx,other::r-x" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseInvalid(t *testing.T) {
	enc := func(s string) []byte { return mustText(t, s).Bytes() }
	withVersion := func(b []byte, v byte) []byte { b = append([]byte(nil), b...); b[0] = v; return b }
	minimal := enc("u::rwx,g::r-x,o::---")
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", []byte{2, 0}},
		{"header only", []byte{2, 0, 0, 0}},
		{"version 1", withVersion(minimal, 1)},
		{"truncated entry", minimal[:len(minimal)-1]},
		{"missing other", enc("u::rwx,g::r-x")},
		{"missing user obj", enc("g::r-x,o::---")},
		{"named user without mask", enc("u::rwx,u:5:r--,g::r-x,o::---")},
		{"named group without mask", enc("u::rwx,g::r-x,g:5:r--,o::---")},
		{"user after group", enc("u::rwx,g::r-x,u:5:r--,m::r-x,o::---")},
		{"duplicate uid", enc("u::rwx,u:5:r--,u:5:r--,g::r-x,m::r-x,o::---")},
		{"unsorted uids", enc("u::rwx,u:6:r--,u:5:r--,g::r-x,m::r-x,o::---")},
		{"unsorted gids", enc("u::rwx,g::r-x,g:9:r--,g:8:r--,m::r-x,o::---")},
		{"two masks", enc("u::rwx,u:5:r--,g::r-x,m::r-x,m::r-x,o::---")},
		{"two others", enc("u::rwx,g::r-x,o::---,o::---")},
		{"undefined uid", enc("u::rwx,u:4294967295:r--,g::r-x,m::r-x,o::---")},
		{"perm bit 8", func() []byte { b := minimal; b = append([]byte(nil), b...); b[6] = 8; return b }()},
		{"unknown tag", func() []byte { b := append([]byte(nil), minimal...); b[4] = 0x40; return b }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Parse(tt.in)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%x) = %v, %v; want ErrInvalid", tt.in, a, err)
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	tests := []string{
		"u::rwx,g::r-x,o::---",
		"u::---,g::---,m::---,o::---", // mask without named entries is allowed
		"u::rwx,u:0:r--,u:5:--x,u:4294967294:rwx,g::r-x,g:0:r--,g:7:rw-,m::rwx,o::r--",
	}
	for _, s := range tests {
		t.Run(s, func(t *testing.T) {
			a := mustText(t, s)
			got, err := Parse(a.Bytes())
			if err != nil {
				t.Fatalf("Parse(Bytes(%s)): %v", s, err)
			}
			if diff := cmp.Diff(a, got); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromMode(t *testing.T) {
	tests := []struct {
		mode uint32
		want string
	}{
		{0o700, "user::rwx,group::---,other::---"},
		{0o40751, "user::rwx,group::r-x,other::--x"},
		{0o7640, "user::rw-,group::r--,other::---"},
	}
	for _, tt := range tests {
		if got := FromMode(tt.mode).String(); got != tt.want {
			t.Errorf("FromMode(%o) = %s, want %s", tt.mode, got, tt.want)
		}
		if got := FromMode(tt.mode).Mode(); got != tt.mode&0o777 {
			t.Errorf("FromMode(%o).Mode() = %o", tt.mode, got)
		}
	}
}

// TestAllowedTable documents the kernel's decisions, including its quirks;
// TestAllowedMatchesKernel checks the same function against the kernel.
func TestAllowedTable(t *testing.T) {
	const owner, group = 100, 200
	tests := []struct {
		name string
		acl  string
		uid  uint32
		gids []uint32
		want Perm
		ok   bool
	}{
		{"owner gets user obj", "u::r--,g::rwx,o::rwx", owner, []uint32{group}, Write, false},
		{"owner ignores named entry", "u::---,u:100:rwx,g::---,m::rwx,o::---", owner, []uint32{1}, Read, false},
		{"named user masked", "u::rwx,u:5:rwx,g::---,m::r-x,o::---", 5, []uint32{5}, Write, false},
		{"named user within mask", "u::rwx,u:5:rwx,g::---,m::r-x,o::---", 5, []uint32{5}, Read | Exec, true},
		{"named user beats other", "u::rwx,u:5:---,g::---,m::rwx,o::rwx", 5, []uint32{5}, Read, false},
		{"empty mask falls back to other", "u::rwx,u:5:---,g::---,m::---,o::r-x", 5, []uint32{5}, Read, true},
		{"empty mask, owning group gets nothing", "u::rwx,g::rwx,g:9:rwx,m::---,o::r-x", 5, []uint32{group}, Read, false},
		{"group obj", "u::rwx,g::r-x,o::---", 5, []uint32{group}, Exec, true},
		{"group match denies other", "u::rwx,g::---,o::rwx", 5, []uint32{group}, Read, false},
		{"second group grants", "u::rwx,g::r--,g:9:--x,m::rwx,o::---", 5, []uint32{group, 9}, Exec, true},
		{"groups do not combine", "u::rwx,g::r--,g:9:--x,m::rwx,o::---", 5, []uint32{group, 9}, Read | Exec, false},
		{"granting group masked off", "u::rwx,g::r-x,g:9:rwx,m::r--,o::rwx", 5, []uint32{9}, Exec, false},
		{"other", "u::rwx,u:6:rwx,g::rwx,m::rwx,o::--x", 5, []uint32{5}, Exec, true},
		{"uid 0 not special", "u::rwx,g::---,o::---", 0, []uint32{0}, Read, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustText(t, tt.acl)
			if err := a.Valid(); err != nil {
				t.Fatal(err)
			}
			if got := a.Allowed(owner, group, tt.uid, tt.gids, tt.want); got != tt.ok {
				t.Errorf("%s.Allowed(%d, %d, %d, %v, %s) = %v, want %v", tt.acl, owner, group, tt.uid, tt.gids, tt.want, got, tt.ok)
			}
		})
	}
}

func TestAddUserExecUndoPure(t *testing.T) {
	tests := []struct {
		name   string
		before string
		uid    uint32
		after  string
		change Change
	}{
		{
			name:   "minimal",
			before: "u::rwx,g::---,o::---",
			uid:    107,
			after:  "u::rwx,u:107:--x,g::---,m::--x,o::---",
			change: Change{UID: 107, AddedEntry: true, AddedPerm: Exec, AddedMask: true, OldMask: 0, MaskAddedPerm: Exec},
		},
		{
			name:   "minimal, group has x",
			before: "u::rwx,g::r-x,o::---",
			uid:    107,
			after:  "u::rwx,u:107:--x,g::r-x,m::r-x,o::---",
			change: Change{UID: 107, AddedEntry: true, AddedPerm: Exec, AddedMask: true, OldMask: Read | Exec},
		},
		{
			name:   "restrictive mask widens others",
			before: "u::rwx,u:5:r-x,u:200:rw-,g::r-x,g:9:rwx,m::r--,o::---",
			uid:    107,
			after:  "u::rwx,u:5:r-x,u:107:--x,u:200:rw-,g::r-x,g:9:rwx,m::r-x,o::---",
			change: Change{UID: 107, AddedEntry: true, AddedPerm: Exec, MaskChanged: true, OldMask: Read, MaskAddedPerm: Exec,
				Widened: []Entry{{Tag: User, ID: 5, Perm: Read | Exec}, {Tag: GroupObj, Perm: Read | Exec}, {Tag: Group, ID: 9, Perm: Read | Write | Exec}}},
		},
		{
			name:   "existing entry r--",
			before: "u::rwx,u:107:r--,g::---,m::r--,o::---",
			uid:    107,
			after:  "u::rwx,u:107:r-x,g::---,m::r-x,o::---",
			change: Change{UID: 107, AddedPerm: Exec, MaskChanged: true, OldMask: Read, MaskAddedPerm: Exec},
		},
		{
			name:   "already granted",
			before: "u::rwx,u:107:--x,g::---,m::--x,o::---",
			uid:    107,
			after:  "u::rwx,u:107:--x,g::---,m::--x,o::---",
			change: Change{UID: 107, OldMask: Exec},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := mustText(t, tt.before)
			got, c := addUserExec(before, tt.uid, nil)
			if diff := cmp.Diff(mustText(t, tt.after), got); diff != "" {
				t.Errorf("addUserExec(%s) ACL mismatch (-want +got):\n%s", tt.before, diff)
			}
			if err := got.Valid(); err != nil {
				t.Errorf("addUserExec(%s) produced invalid ACL: %v", tt.before, err)
			}
			if diff := cmp.Diff(tt.change, c); diff != "" {
				t.Errorf("addUserExec(%s) Change mismatch (-want +got):\n%s", tt.before, diff)
			}
			if diff := cmp.Diff(before, undo(got, c, nil)); diff != "" {
				t.Errorf("undo(addUserExec(%s)) mismatch (-want +got):\n%s", tt.before, diff)
			}
		})
	}
}

// TestUndoPure covers undo on its own: records as older versions wrote
// them (JSON without the later fields), shared masks and edits made since.
func TestUndoPure(t *testing.T) {
	tests := []struct {
		name   string
		acl    string
		change string // Change as JSON, as read from the journal
		active []Change
		want   string
	}{
		{
			name:   "no-op change",
			acl:    "u::rwx,u:107:--x,g::---,m::--x,o::---",
			change: `{"uid":107,"old_mask":1}`,
			want:   "u::rwx,u:107:--x,g::---,m::--x,o::---",
		},
		{
			name:   "created mask, last named entry goes",
			acl:    "u::rwx,u:107:--x,g::r--,m::r-x,o::---",
			change: `{"uid":107,"added_entry":true,"added_perm":1,"added_mask":true,"old_mask":4,"mask_added_perm":1}`,
			want:   "u::rwx,g::r--,o::---",
		},
		{
			name:   "created mask, admin entry added since keeps x",
			acl:    "u::rwx,u:107:--x,u:1234:--x,g::---,m::--x,o::---",
			change: `{"uid":107,"added_entry":true,"added_perm":1,"added_mask":true,"old_mask":0,"mask_added_perm":1}`,
			want:   "u::rwx,u:1234:--x,g::---,m::--x,o::---",
		},
		{
			name:   "created mask, recomputed from what remains",
			acl:    "u::rwx,u:107:--x,g::r--,g:9:rw-,m::rwx,o::---",
			change: `{"uid":107,"added_entry":true,"added_perm":1,"added_mask":true,"old_mask":4,"mask_added_perm":1}`,
			want:   "u::rwx,g::r--,g:9:rw-,m::rw-,o::---",
		},
		{
			name:   "widened mask, only widened entries left",
			acl:    "u::rwx,u:5:r-x,u:107:--x,g::r-x,m::r-x,o::---",
			change: `{"uid":107,"added_entry":true,"added_perm":1,"mask_changed":true,"old_mask":4,"mask_added_perm":1,"widened":[{"tag":2,"id":5,"perm":5},{"tag":4,"perm":5}]}`,
			want:   "u::rwx,u:5:r-x,g::r-x,m::r--,o::---",
		},
		{
			name:   "widened mask, entry added since keeps x",
			acl:    "u::rwx,u:5:r-x,u:107:--x,u:1234:--x,g::r-x,m::r-x,o::---",
			change: `{"uid":107,"added_entry":true,"added_perm":1,"mask_changed":true,"old_mask":4,"mask_added_perm":1,"widened":[{"tag":2,"id":5,"perm":5},{"tag":4,"perm":5}]}`,
			want:   "u::rwx,u:5:r-x,u:1234:--x,g::r-x,m::r-x,o::---",
		},
		{
			name:   "widened mask, active grant in the widened list keeps x",
			acl:    "u::rwx,u:5:r-x,u:107:--x,g::r-x,m::r-x,o::---",
			change: `{"uid":107,"added_entry":true,"added_perm":1,"mask_changed":true,"old_mask":4,"mask_added_perm":1,"widened":[{"tag":2,"id":5,"perm":5},{"tag":4,"perm":5}]}`,
			active: []Change{{UID: 5, Inherited: true, MaskChanged: true, MaskAddedPerm: Exec}},
			want:   "u::rwx,u:5:r-x,g::r-x,m::r-x,o::---",
		},
		{
			name:   "old record: own entry had x masked off",
			acl:    "u::rwx,u:107:--x,g::---,m::--x,o::---",
			change: `{"uid":107,"mask_changed":true,"old_mask":0,"mask_added_perm":1}`,
			want:   "u::rwx,u:107:--x,g::---,m::---,o::---",
		},
		{
			name:   "mask removed by the administrator since",
			acl:    "u::rwx,g::---,o::---",
			change: `{"uid":107,"added_entry":true,"added_perm":1,"added_mask":true,"old_mask":0,"mask_added_perm":1}`,
			want:   "u::rwx,g::---,o::---",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Change
			if err := json.Unmarshal([]byte(tt.change), &c); err != nil {
				t.Fatal(err)
			}
			a := mustText(t, tt.acl)
			got := undo(a, c, tt.active)
			if diff := cmp.Diff(mustText(t, tt.want), got); diff != "" {
				t.Errorf("undo(%s, %s) mismatch (-want +got):\n%s", tt.acl, tt.change, diff)
			}
			if err := got.Valid(); err != nil {
				t.Errorf("undo(%s, %s) = %s, invalid: %v", tt.acl, tt.change, got, err)
			}
			if again := undo(got, c, tt.active); !equal(again, got) {
				t.Errorf("undo not idempotent: %s, then %s", got, again)
			}
		})
	}
}

// TestAddUserExecInherits checks that a grant made while another of ours
// owns the mask takes over that record.
func TestAddUserExecInherits(t *testing.T) {
	minimal := mustText(t, "u::rwx,g::---,o::---")
	afterA, a := addUserExec(minimal, 64055, nil)
	_, b := addUserExec(afterA, 64056, []Change{a})
	want := Change{UID: 64056, AddedEntry: true, AddedPerm: Exec, AddedMask: true, OldMask: 0, MaskAddedPerm: Exec, Inherited: true}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("grant B after A on a minimal ACL (-want +got):\n%s", diff)
	}
	// Without active grants the mask looks like the administrator's.
	if _, b := addUserExec(afterA, 64056, nil); b.AddedMask || b.Inherited {
		t.Errorf("grant B without active grants = %+v, want no mask ownership", b)
	}
	// A grant for a uid that already has x through a mask we own is
	// recorded (to be undone) although the ACL does not change.
	admin := mustText(t, "u::rwx,u:5:--x,g::---,m::r--,o::---")
	widened, a := addUserExec(admin, 7, nil)
	got, c := addUserExec(widened, 5, []Change{a})
	if !equal(got, widened) || !c.Changed() || !c.Inherited || !c.MaskChanged {
		t.Errorf("grant for masked-off user:5 after a widening grant = %s, %+v; want the ACL unchanged and an inherited MaskChanged", got, c)
	}
}
