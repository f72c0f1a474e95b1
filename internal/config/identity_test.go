package config

import (
	"bufio"
	"errors"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// account looks up a user the test relies on, skipping when the machine
// lacks it.
func account(t *testing.T, name string) *user.User {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("user %s not on this machine: %v", name, err)
	}
	return u
}

func groupID(t *testing.T, name string) uint32 {
	t.Helper()
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Skipf("group %s not on this machine: %v", name, err)
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

func id32(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

func TestRunAsNumeric(t *testing.T) {
	// Ids far above anything allocated: no names, and a uid without a
	// password entry gets no supplementary groups, only the gid.
	q := QEMU{Path: "/x/qemu.conf", User: "+4000000", Group: "+4000001"}
	got, err := q.RunAs()
	if err != nil {
		t.Fatalf("RunAs(%+v) error: %v", q, err)
	}
	want := Identity{UID: 4000000, GID: 4000001, Groups: []uint32{4000001}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RunAs(%+v) (-want +got):\n%s", q, diff)
	}
	if s := got.String(); s != "4000000:4000001" {
		t.Errorf("String() = %q, want 4000000:4000001", s)
	}
}

func TestRunAsNames(t *testing.T) {
	account(t, "root")
	nogroup := groupID(t, "nogroup")
	tests := []struct {
		name        string
		q           QEMU
		uid, gid    uint32
		user, group string
	}{
		{"names", QEMU{User: "root", Group: "root"}, 0, 0, "root", "root"},
		{"plus numbers get names", QEMU{User: "+0", Group: "+0"}, 0, 0, "root", "root"},
		{"number without plus falls back to the id", QEMU{User: "0", Group: "0"}, 0, 0, "root", "root"},
		{"group not the user's primary", QEMU{User: "root", Group: "nogroup"}, 0, nogroup, "root", "nogroup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.q.RunAs()
			if err != nil {
				t.Fatalf("RunAs(%+v) error: %v", tt.q, err)
			}
			if got.UID != tt.uid || got.GID != tt.gid || got.User != tt.user || got.Group != tt.group {
				t.Errorf("RunAs(%+v) = %v, want %d(%s):%d(%s)", tt.q, got, tt.uid, tt.user, tt.gid, tt.group)
			}
			// virGetGroupList: the user's own groups first (root's primary
			// group 0 leads), the configured gid always included.
			if len(got.Groups) == 0 || got.Groups[0] != 0 || !slices.Contains(got.Groups, tt.gid) {
				t.Errorf("RunAs(%+v).Groups = %v, want 0 first and %d included", tt.q, got.Groups, tt.gid)
			}
			if c := slices.Compact(slices.Sorted(slices.Values(got.Groups))); len(c) != len(got.Groups) {
				t.Errorf("RunAs(%+v).Groups = %v has duplicates", tt.q, got.Groups)
			}
		})
	}
}

// TestRunAsSupplementary finds a user listed as a member of a group in
// /etc/group and checks that RunAs gives it that group, as getgrouplist
// would.
func TestRunAsSupplementary(t *testing.T) {
	f, err := os.Open("/etc/group")
	if err != nil {
		t.Skipf("no /etc/group: %v", err)
	}
	defer f.Close()
	var member string
	var gid uint32
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) != 4 || fields[3] == "" {
			continue
		}
		for _, m := range strings.Split(fields[3], ",") {
			if _, err := user.Lookup(m); err == nil {
				member, gid = m, id32(t, fields[2])
				break
			}
		}
		if member != "" {
			break
		}
	}
	if member == "" {
		t.Skip("no user on this machine is a listed member of a group in /etc/group")
	}
	u := account(t, member)
	q := QEMU{User: member, Group: "+4000001"}
	got, err := q.RunAs()
	if err != nil {
		t.Fatalf("RunAs(%+v) error: %v", q, err)
	}
	primary := id32(t, u.Gid)
	if len(got.Groups) < 2 || got.Groups[0] != primary || !slices.Contains(got.Groups, gid) ||
		got.Groups[len(got.Groups)-1] != 4000001 {
		t.Errorf("RunAs(%+v).Groups = %v, want primary %d first, member group %d, and 4000001 last", q, got.Groups, primary, gid)
	}
}

func TestRunAsDefault(t *testing.T) {
	if _, err := user.Lookup("libvirt-qemu"); err != nil {
		t.Skip("no libvirt-qemu account: the Debian default does not apply on this machine")
	}
	u := account(t, "libvirt-qemu")
	kvm := groupID(t, "kvm")
	tests := []struct {
		name     string
		q        QEMU
		uid, gid uint32
	}{
		{"both unset", QEMU{}, id32(t, u.Uid), kvm},
		// Only user set: libvirt keeps the build-time default group rather
		// than the user's primary group.
		{"only user set", QEMU{User: "+0"}, 0, kvm},
		{"only group set", QEMU{Group: "+0"}, id32(t, u.Uid), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.q.RunAs()
			if err != nil {
				t.Fatalf("RunAs(%+v) error: %v", tt.q, err)
			}
			if got.UID != tt.uid || got.GID != tt.gid || !slices.Contains(got.Groups, tt.gid) {
				t.Errorf("RunAs(%+v) = %v groups %v, want %d:%d with %d in groups", tt.q, got, got.Groups, tt.uid, tt.gid, tt.gid)
			}
		})
	}
}

func TestRunAsErrors(t *testing.T) {
	tests := []struct {
		name     string
		q        QEMU
		is       error
		contains string
	}{
		{"missing user", QEMU{User: "no-such-user-dac-hook", Group: "+0"}, ErrUnknownUser, `user "no-such-user-dac-hook": no such user`},
		{"missing group", QEMU{User: "+0", Group: "no-such-group-dac-hook"}, ErrUnknownGroup, `group "no-such-group-dac-hook"`},
		{"plus not a number", QEMU{User: "+qemu", Group: "+0"}, ErrBadID, `user "+qemu"`},
		{"plus negative", QEMU{User: "+-1", Group: "+0"}, ErrBadID, "invalid numeric id"},
		{"plus plus", QEMU{User: "++1", Group: "+0"}, ErrBadID, "invalid numeric id"},
		{"plus alone", QEMU{User: "+0", Group: "+"}, ErrBadID, `group "+"`},
		{"uid -1", QEMU{User: "+4294967295", Group: "+0"}, ErrBadID, "invalid numeric id"},
		{"beyond 32 bits", QEMU{User: "+4294967296", Group: "+0"}, ErrBadID, "invalid numeric id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Path = "/etc/libvirt/qemu.conf"
			got, err := tt.q.RunAs()
			if !errors.Is(err, tt.is) {
				t.Fatalf("RunAs(%+v) = %v, %v; want errors.Is %v", tt.q, got, err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.contains) || !strings.Contains(err.Error(), tt.q.Path) {
				t.Errorf("RunAs(%+v) error = %q, want it to contain %q and the path", tt.q, err, tt.contains)
			}
		})
	}
}

func TestParseLabel(t *testing.T) {
	account(t, "root")
	daemon := account(t, "daemon")
	tests := []struct {
		label string
		want  Identity
	}{
		{"+107:+107", Identity{UID: 107, GID: 107, Group: groupName(107)}},
		{"+0:+0", Identity{UID: 0, GID: 0, User: "root", Group: "root"}},
		{"0:0", Identity{UID: 0, GID: 0, User: "root", Group: "root"}},
		{"root:root", Identity{UID: 0, GID: 0, User: "root", Group: "root"}},
		{"daemon:+4000001", Identity{UID: id32(t, daemon.Uid), GID: 4000001, User: "daemon"}},
		{"4000000:4000001", Identity{UID: 4000000, GID: 4000001}},
	}
	for _, tt := range tests {
		got, err := ParseLabel(tt.label)
		if err != nil {
			t.Errorf("ParseLabel(%q) error: %v", tt.label, err)
			continue
		}
		// Groups depend on this machine's /etc/group; they always hold
		// the label's gid, and a uid without an account gets only that.
		if !slices.Contains(got.Groups, got.GID) {
			t.Errorf("ParseLabel(%q).Groups = %v, want it to contain gid %d", tt.label, got.Groups, got.GID)
		}
		got.Groups = nil
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseLabel(%q) (-want +got):\n%s", tt.label, diff)
		}
	}
	if got, _ := ParseLabel("4000000:4000001"); !slices.Equal(got.Groups, []uint32{4000001}) {
		t.Errorf("ParseLabel(4000000:4000001).Groups = %v, want [4000001]", got.Groups)
	}
}

// groupName returns the name of gid on this machine, or "".
func groupName(gid int) string {
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		return ""
	}
	return g.Name
}

func TestParseLabelErrors(t *testing.T) {
	tests := []struct {
		label string
		is    error
	}{
		{"", ErrBadLabel},
		{"root", ErrBadLabel},
		{"+107", ErrBadLabel},
		{":", ErrUnknownUser},
		{"root:", ErrUnknownGroup},
		{":root", ErrUnknownUser},
		{"no-such-user-dac-hook:root", ErrUnknownUser},
		{"+0:+0:+0", ErrBadID}, // split at the first ':', as libvirt does
		{"+x:+0", ErrBadID},
		{"+ 1:+0", ErrBadID},
	}
	for _, tt := range tests {
		got, err := ParseLabel(tt.label)
		if !errors.Is(err, tt.is) {
			t.Errorf("ParseLabel(%q) = %v, %v; want errors.Is %v", tt.label, got, err, tt.is)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(tt.label)) {
			t.Errorf("ParseLabel(%q) error = %q, want it to quote the label", tt.label, err)
		}
	}
}

func TestIdentityString(t *testing.T) {
	id := Identity{UID: 64055, GID: 107, User: "libvirt-qemu", Group: "kvm"}
	if s := id.String(); s != "64055(libvirt-qemu):107(kvm)" {
		t.Errorf("String() = %q", s)
	}
}
