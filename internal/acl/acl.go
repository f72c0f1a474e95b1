package acl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Perm is a set of ACL permission bits: 4 = read, 2 = write, 1 = execute
// (search, for a directory).
type Perm uint16

// Permission bits, as in the kernel's ACL_READ, ACL_WRITE and ACL_EXECUTE.
const (
	Read  Perm = 4
	Write Perm = 2
	Exec  Perm = 1

	permAll = Read | Write | Exec
)

// String renders p as getfacl does: "r-x".
func (p Perm) String() string {
	b := []byte("---")
	if p&Read != 0 {
		b[0] = 'r'
	}
	if p&Write != 0 {
		b[1] = 'w'
	}
	if p&Exec != 0 {
		b[2] = 'x'
	}
	if p&^permAll != 0 {
		return string(b) + "+0x" + strconv.FormatUint(uint64(p&^permAll), 16)
	}
	return string(b)
}

// Tag is the kind of an ACL entry; the values are the on-disk ones.
type Tag uint16

// Entry tags, as in include/uapi/linux/posix_acl.h.
const (
	UserObj  Tag = 0x01 // the file owner
	User     Tag = 0x02 // a named user, Entry.ID is the uid
	GroupObj Tag = 0x04 // the owning group
	Group    Tag = 0x08 // a named group, Entry.ID is the gid
	Mask     Tag = 0x10 // upper bound for named entries and the owning group
	Other    Tag = 0x20 // everybody else
)

// String renders t as getfacl does ("user", "group", "mask", "other").
func (t Tag) String() string {
	switch t {
	case UserObj, User:
		return "user"
	case GroupObj, Group:
		return "group"
	case Mask:
		return "mask"
	case Other:
		return "other"
	}
	return "tag(0x" + strconv.FormatUint(uint64(t), 16) + ")"
}

// qualified reports whether entries with this tag carry an ID.
func (t Tag) qualified() bool { return t == User || t == Group }

// Entry is one ACL entry. ID is meaningful only for User and Group; it is
// zero for the other tags (the xattr stores ACL_UNDEFINED_ID there, which
// Parse drops and Bytes writes back).
type Entry struct {
	Tag  Tag    `json:"tag"`
	ID   uint32 `json:"id,omitempty"`
	Perm Perm   `json:"perm"`
}

// String renders e in getfacl's short form, numeric: "user:107:--x".
func (e Entry) String() string {
	id := ""
	if e.Tag.qualified() {
		id = strconv.FormatUint(uint64(e.ID), 10)
	}
	return e.Tag.String() + ":" + id + ":" + e.Perm.String()
}

// ACL is an access ACL in the kernel's canonical order: user::, named
// users by uid, group::, named groups by gid, mask::, other::.
type ACL []Entry

// String renders a in the comma-separated short text form accepted by
// `setfacl --set` (numeric ids), e.g. "user::rwx,user:107:--x,group::---,mask::--x,other::---".
func (a ACL) String() string {
	s := make([]string, len(a))
	for i, e := range a {
		s[i] = e.String()
	}
	return strings.Join(s, ",")
}

// ErrInvalid is returned (wrapped) for bytes or ACLs that do not form a
// valid access ACL.
var ErrInvalid = errors.New("invalid posix acl")

const (
	xattrVersion = 2
	headerSize   = 4
	entrySize    = 8
	undefinedID  = 0xffffffff
)

// Parse decodes the value of a system.posix_acl_access xattr: a
// little-endian u32 version (2) followed by entries {u16 tag, u16 perm,
// u32 id}. It accepts only what the kernel would accept from setxattr
// (see Valid), so anything it returns can be evaluated and written back.
// Allocation is proportional to len(b).
func Parse(b []byte) (ACL, error) {
	if len(b) < headerSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrInvalid, len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != xattrVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrInvalid, v, xattrVersion)
	}
	body := b[headerSize:]
	if len(body)%entrySize != 0 {
		return nil, fmt.Errorf("%w: %d bytes of entries is not a multiple of %d", ErrInvalid, len(body), entrySize)
	}
	a := make(ACL, 0, len(body)/entrySize)
	for off := 0; off < len(body); off += entrySize {
		e := Entry{
			Tag:  Tag(binary.LittleEndian.Uint16(body[off:])),
			Perm: Perm(binary.LittleEndian.Uint16(body[off+2:])),
		}
		if e.Tag.qualified() {
			e.ID = binary.LittleEndian.Uint32(body[off+4:])
		}
		a = append(a, e)
	}
	if err := a.Valid(); err != nil {
		return nil, err
	}
	return a, nil
}

// Bytes encodes a in the xattr format. It does not validate; call Valid
// first when a was built by hand.
func (a ACL) Bytes() []byte {
	b := make([]byte, headerSize+entrySize*len(a))
	binary.LittleEndian.PutUint32(b, xattrVersion)
	for i, e := range a {
		off := headerSize + i*entrySize
		binary.LittleEndian.PutUint16(b[off:], uint16(e.Tag))
		binary.LittleEndian.PutUint16(b[off+2:], uint16(e.Perm))
		id := uint32(undefinedID)
		if e.Tag.qualified() {
			id = e.ID
		}
		binary.LittleEndian.PutUint32(b[off+4:], id)
	}
	return b
}

// Valid checks the rules of the kernel's posix_acl_valid: only rwx bits;
// exactly one user::, group:: and other::; entries in canonical order;
// named uids and gids strictly increasing and not ACL_UNDEFINED_ID; a
// mask:: whenever there are named entries (a mask without named entries
// is allowed, as the kernel allows it).
func (a ACL) Valid() error {
	const (
		stUserObj = iota
		stUser
		stGroup
		stOther
		stDone
	)
	state := stUserObj
	needsMask := false
	var prev uint32
	first := true
	for i, e := range a {
		if e.Perm&^permAll != 0 {
			return fmt.Errorf("%w: entry %d (%s) has bits outside rwx", ErrInvalid, i, e)
		}
		ok := false
		switch e.Tag {
		case UserObj:
			if state == stUserObj {
				state, ok, first = stUser, true, true
			}
		case User, Group:
			want := stUser
			if e.Tag == Group {
				want = stGroup
			}
			if state == want && e.ID != undefinedID && (first || e.ID > prev) {
				ok, needsMask, prev, first = true, true, e.ID, false
			}
		case GroupObj:
			if state == stUser {
				state, ok, first = stGroup, true, true
			}
		case Mask:
			if state == stGroup {
				state, ok = stOther, true
			}
		case Other:
			if state == stOther || (state == stGroup && !needsMask) {
				state, ok = stDone, true
			}
		}
		if !ok {
			return fmt.Errorf("%w: entry %d (%s) out of order, duplicated or unknown", ErrInvalid, i, e)
		}
	}
	if state != stDone {
		return fmt.Errorf("%w: missing required entries in %q", ErrInvalid, a.String())
	}
	return nil
}

// FromMode returns the minimal ACL equivalent to the permission bits of
// mode (file type and setuid/setgid/sticky bits are ignored): what the
// kernel evaluates when an inode has no ACL xattr.
func FromMode(mode uint32) ACL {
	return ACL{
		{Tag: UserObj, Perm: Perm(mode>>6) & permAll},
		{Tag: GroupObj, Perm: Perm(mode>>3) & permAll},
		{Tag: Other, Perm: Perm(mode) & permAll},
	}
}

// Minimal reports whether a has only the three entries that the mode bits
// can express (no named entries, no mask).
func (a ACL) Minimal() bool {
	for _, e := range a {
		switch e.Tag {
		case User, Group, Mask:
			return false
		}
	}
	return true
}

// find returns the index of the entry with tag (and id, for qualified
// tags), or -1.
func (a ACL) find(tag Tag, id uint32) int {
	for i, e := range a {
		if e.Tag == tag && (!tag.qualified() || e.ID == id) {
			return i
		}
	}
	return -1
}

// perm returns the permissions of the unqualified entry with tag and
// whether it exists.
func (a ACL) perm(tag Tag) (Perm, bool) {
	if i := a.find(tag, 0); i >= 0 {
		return a[i].Perm, true
	}
	return 0, false
}

// GroupClass returns the permission bits the kernel shows as the group
// bits of st_mode: the mask if there is one, else group::.
func (a ACL) GroupClass() Perm {
	if p, ok := a.perm(Mask); ok {
		return p
	}
	p, _ := a.perm(GroupObj)
	return p
}

// Mode returns the rwxrwxrwx permission bits the kernel derives from a
// (posix_acl_equiv_mode): user::, the group class, other::.
func (a ACL) Mode() uint32 {
	u, _ := a.perm(UserObj)
	o, _ := a.perm(Other)
	return uint32(u&permAll)<<6 | uint32(a.GroupClass()&permAll)<<3 | uint32(o&permAll)
}

// clone returns a copy of a that can be edited without aliasing.
func (a ACL) clone() ACL { return append(ACL(nil), a...) }

// insert puts e at its canonical position in a valid ACL; e must not be
// present yet.
func (a ACL) insert(e Entry) ACL {
	pos := len(a)
	for i, x := range a {
		if x.Tag > e.Tag || (x.Tag == e.Tag && e.Tag.qualified() && x.ID > e.ID) {
			pos = i
			break
		}
	}
	a = append(a, Entry{})
	copy(a[pos+1:], a[pos:])
	a[pos] = e
	return a
}

// Allowed reports whether a process with fsuid uid and group set gids
// would be granted all of want on an inode with this ACL owned by
// fileUID:fileGID. gids must hold the primary (fs)gid as well as the
// supplementary groups. It follows the kernel (acl_permission_check and
// posix_acl_permission in 6.x), including its quirks:
//
//   - the owner gets user:: and nothing else;
//   - if the group class (mask, or group:: without one) is empty, the ACL
//     is skipped and the mode bits decide: members of the owning group get
//     the (empty) group bits, everyone else other::;
//   - a named user entry is limited by the mask;
//   - among group:: and named groups, the first matching entry that
//     grants all of want decides, limited by the mask; if some group
//     matched but none granted want, access is denied without looking at
//     other::.
//
// Capabilities are not considered: uid 0 is treated like any other uid,
// because the question is always asked for the unprivileged QEMU user.
// Allowed does not look at the path to the inode (search permission on
// the parents is a separate question for each parent).
func (a ACL) Allowed(fileUID, fileGID, uid uint32, gids []uint32, want Perm) bool {
	want &= permAll
	inGroup := func(g uint32) bool {
		for _, x := range gids {
			if x == g {
				return true
			}
		}
		return false
	}
	grants := func(p Perm) bool { return p&want == want }

	if uid == fileUID {
		p, _ := a.perm(UserObj)
		return grants(p)
	}
	if a.Minimal() || a.GroupClass() == 0 {
		// The kernel only consults the ACL when the mode's group bits are
		// non-zero; otherwise plain mode bits apply.
		if inGroup(fileGID) {
			return grants(a.GroupClass())
		}
		p, _ := a.perm(Other)
		return grants(p)
	}
	mask, _ := a.perm(Mask) // non-minimal valid ACLs always have one
	found := false
	for _, e := range a {
		switch e.Tag {
		case User:
			if e.ID == uid {
				return grants(e.Perm & mask)
			}
		case GroupObj, Group:
			g := e.ID
			if e.Tag == GroupObj {
				g = fileGID
			}
			if inGroup(g) {
				found = true
				if grants(e.Perm) {
					return grants(e.Perm & mask)
				}
			}
		case Other:
			if found {
				return false
			}
			return grants(e.Perm)
		}
	}
	return false
}
