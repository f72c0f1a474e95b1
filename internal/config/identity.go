package config

import (
	"errors"
	"fmt"
	"math"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// Errors from resolving accounts. Compare with errors.Is.
var (
	// ErrUnknownUser: a user name not in the password database and not a
	// number either.
	ErrUnknownUser = errors.New("no such user")
	// ErrUnknownGroup: a group name not in the group database and not a
	// number either.
	ErrUnknownGroup = errors.New("no such group")
	// ErrBadID: a "+N" id that is not a decimal number in range.
	ErrBadID = errors.New("invalid numeric id")
	// ErrBadLabel: a seclabel that is not "user:group".
	ErrBadLabel = errors.New("invalid DAC label")
)

// Identity is a uid/gid QEMU runs as, with the supplementary groups
// libvirt gives it.
type Identity struct {
	UID, GID    uint32
	User, Group string // names if the databases know the ids, else ""
	// Groups is the full group list of the process: GID plus the
	// supplementary groups, as libvirt's virGetGroupList computes it.
	// Nil when not computed (see ParseLabel).
	Groups []uint32
}

// String formats the identity as uid:gid with names where known, e.g.
// "64055(libvirt-qemu):107(kvm)".
func (id Identity) String() string {
	f := func(n uint32, name string) string {
		if name == "" {
			return strconv.FormatUint(uint64(n), 10)
		}
		return fmt.Sprintf("%d(%s)", n, name)
	}
	return f(id.UID, id.User) + ":" + f(id.GID, id.Group)
}

// Distribution defaults for user and group, which libvirt fixes at build
// time (QEMU_USER/QEMU_GROUP). Debian and Ubuntu build with
// libvirt-qemu:kvm; Fedora, RHEL, SUSE and upstream use qemu:qemu.
const (
	debianUser, debianGroup = "libvirt-qemu", "kvm"
	otherUser, otherGroup   = "qemu", "qemu"
)

// defaultAccount guesses the distribution's build-time defaults from
// whether the Debian account exists.
func defaultAccount() (userSpec, groupSpec string, err error) {
	_, err = user.Lookup(debianUser)
	var unknown user.UnknownUserError
	switch {
	case err == nil:
		return debianUser, debianGroup, nil
	case errors.As(err, &unknown):
		return otherUser, otherGroup, nil
	}
	return "", "", fmt.Errorf("look up user %s: %w", debianUser, err)
}

// RunAs works out who QEMU runs as, as libvirt's qemu driver does: the
// "user" and "group" settings are resolved independently (virGetUserID,
// virGetGroupID), each falling back to the distribution default when
// unset. In particular, setting only user does not make QEMU run with that
// user's primary group: the group stays the default one. Groups is
// virGetGroupList(uid, gid): the groups the password and group databases
// give the uid (its primary group and every group listing its name), plus
// gid.
func (q QEMU) RunAs() (Identity, error) {
	userSpec, groupSpec := q.User, q.Group
	if userSpec == "" || groupSpec == "" {
		du, dg, err := defaultAccount()
		if err != nil {
			return Identity{}, err
		}
		if q.BuiltinUser != "" {
			du = q.BuiltinUser
		}
		if q.BuiltinGroup != "" {
			dg = q.BuiltinGroup
		}
		if userSpec == "" {
			userSpec = du
		}
		if groupSpec == "" {
			groupSpec = dg
		}
	}
	id, err := resolve(userSpec, groupSpec)
	if err != nil {
		return Identity{}, fmt.Errorf("qemu.conf %s: %w", q.Path, err)
	}
	id.Groups, err = groupList(id.UID, id.GID)
	if err != nil {
		return Identity{}, err
	}
	return id, nil
}

// ParseLabel resolves a DAC seclabel <label> or <imagelabel> such as
// "qemu:kvm", "+107:+107" or "107:107" like libvirt's
// virParseOwnershipIds: split at the first ':', then each side is a name,
// or a number if no such name exists, or always a number with a leading
// '+'. Groups is what QEMU started with that label really gets: libvirt's
// virCommand sets uid and gid and calls virGetGroupList(uid, gid) in the
// child, so the label user's own groups (an e2e test showed a labelled QEMU
// does not get the qemu.conf user's groups).
func ParseLabel(label string) (Identity, error) {
	userSpec, groupSpec, ok := strings.Cut(label, ":")
	if !ok {
		return Identity{}, fmt.Errorf("seclabel %q: want user:group: %w", label, ErrBadLabel)
	}
	id, err := resolve(userSpec, groupSpec)
	if err != nil {
		return Identity{}, fmt.Errorf("seclabel %q: %w", label, err)
	}
	if id.Groups, err = groupList(id.UID, id.GID); err != nil {
		return Identity{}, fmt.Errorf("seclabel %q: %w", label, err)
	}
	return id, nil
}

func resolve(userSpec, groupSpec string) (Identity, error) {
	var id Identity
	var err error
	if id.UID, id.User, err = lookupUser(userSpec); err != nil {
		return Identity{}, err
	}
	if id.GID, id.Group, err = lookupGroup(groupSpec); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// parseID parses a decimal id. (uid_t)-1 is refused: to chown(2) it means
// "leave unchanged", never an owner.
func parseID(s string) (uint32, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' { // ParseUint would take "+5"
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

// lookupUser is libvirt's virGetUserID plus the name, if known.
func lookupUser(spec string) (uint32, string, error) {
	num, plus := strings.CutPrefix(spec, "+")
	if !plus {
		u, err := user.Lookup(spec)
		var unknown user.UnknownUserError
		switch {
		case err == nil:
			uid, ok := parseID(u.Uid)
			if !ok {
				return 0, "", fmt.Errorf("user %q has uid %q: %w", spec, u.Uid, ErrBadID)
			}
			return uid, u.Username, nil
		case !errors.As(err, &unknown):
			return 0, "", fmt.Errorf("look up user %q: %w", spec, err)
		}
	}
	uid, ok := parseID(num)
	if !ok {
		if plus {
			return 0, "", fmt.Errorf("user %q: %w", spec, ErrBadID)
		}
		return 0, "", fmt.Errorf("user %q: %w", spec, ErrUnknownUser)
	}
	name := ""
	if u, err := user.LookupId(num); err == nil {
		name = u.Username
	}
	return uid, name, nil
}

// lookupGroup is libvirt's virGetGroupID plus the name, if known.
func lookupGroup(spec string) (uint32, string, error) {
	num, plus := strings.CutPrefix(spec, "+")
	if !plus {
		g, err := user.LookupGroup(spec)
		var unknown user.UnknownGroupError
		switch {
		case err == nil:
			gid, ok := parseID(g.Gid)
			if !ok {
				return 0, "", fmt.Errorf("group %q has gid %q: %w", spec, g.Gid, ErrBadID)
			}
			return gid, g.Name, nil
		case !errors.As(err, &unknown):
			return 0, "", fmt.Errorf("look up group %q: %w", spec, err)
		}
	}
	gid, ok := parseID(num)
	if !ok {
		if plus {
			return 0, "", fmt.Errorf("group %q: %w", spec, ErrBadID)
		}
		return 0, "", fmt.Errorf("group %q: %w", spec, ErrUnknownGroup)
	}
	name := ""
	if g, err := user.LookupGroupId(num); err == nil {
		name = g.Name
	}
	return gid, name, nil
}

// groupList is libvirt's virGetGroupList: getgrouplist(3) for the uid's
// name and primary group when the uid has a password entry, then gid
// appended if not already there. A uid without an entry gets only gid.
func groupList(uid, gid uint32) ([]uint32, error) {
	uidStr := strconv.FormatUint(uint64(uid), 10)
	var groups []uint32
	u, err := user.LookupId(uidStr)
	var unknown user.UnknownUserIdError
	switch {
	case err == nil:
		ids, err := u.GroupIds()
		if err != nil {
			return nil, fmt.Errorf("list groups of user %s: %w", u.Username, err)
		}
		for _, s := range ids {
			g, ok := parseID(s)
			if !ok {
				return nil, fmt.Errorf("list groups of user %s: gid %q: %w", u.Username, s, ErrBadID)
			}
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	case !errors.As(err, &unknown):
		return nil, fmt.Errorf("look up uid %d: %w", uid, err)
	}
	if !slices.Contains(groups, gid) {
		groups = append(groups, gid)
	}
	return groups, nil
}
