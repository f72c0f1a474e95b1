package acl

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Subjects of the shared-mask tests: two QEMU users (as with per-domain
// seclabels), a user the administrator grants by hand, a named user and a
// member of a named group of the initial ACLs.
const (
	qemuA     = 64055
	qemuB     = 64056
	adminUser = 1234
	grpMember = 5000 // in group namedGrp
)

// shareStep is one event on the directory: a grant or release by the hook,
// or a `setfacl -m` by the administrator.
type shareStep struct {
	grant, undo uint32 // AddUserExec / Undo for this uid
	admin       string // setfacl -m argument
}

func grant(uid uint32) shareStep   { return shareStep{grant: uid} }
func release(uid uint32) shareStep { return shareStep{undo: uid} }
func admin(spec string) shareStep  { return shareStep{admin: spec} }

// TestSharedMask makes and releases several grants on one directory in
// different orders, with the administrator editing the ACL in between. The
// hook passes the other grants in effect as active, as it reads them from
// its journal. While a grant is in effect its uid can search the directory
// (access(2) as that uid); at the end the directory is byte-identical
// (getfacl, st_mode, xattr or none) to a control directory that saw only
// the administrator's edits, and every subject has the same access to both.
func TestSharedMask(t *testing.T) {
	requireRoot(t)
	const widenedSpec = "u::rwx,u:1000:r-x,g::r-x,g:100:rwx,m::r--,o::---"
	tests := []struct {
		name  string
		mode  os.FileMode
		spec  string // initial ACL; "" = none
		steps []shareStep
		// legacy: the caller passes no active grants (records and callers
		// from before Change.Inherited). Grants in effect must still keep
		// search; the end state is not compared.
		legacy bool
	}{
		{
			name:  "no acl, A B, release A then B",
			mode:  0o700,
			steps: []shareStep{grant(qemuA), grant(qemuB), release(qemuA), release(qemuB)},
		},
		{
			name:  "no acl, A B, release B then A",
			mode:  0o700,
			steps: []shareStep{grant(qemuA), grant(qemuB), release(qemuB), release(qemuA)},
		},
		{
			name:  "no acl, group has x, A B, release A then B",
			mode:  0o750,
			steps: []shareStep{grant(qemuA), grant(qemuB), release(qemuA), release(qemuB)},
		},
		{
			name:  "no acl, admin adds u:1234:x while A is in effect",
			mode:  0o700,
			steps: []shareStep{grant(qemuA), admin("u:1234:x"), release(qemuA)},
		},
		{
			name:  "no acl, admin adds u:1234:x between two grants",
			mode:  0o700,
			steps: []shareStep{grant(qemuA), admin("u:1234:x"), grant(qemuB), release(qemuA), release(qemuB)},
		},
		{
			name:  "admin mask r--, A B, release A then B",
			mode:  0o750,
			spec:  widenedSpec,
			steps: []shareStep{grant(qemuA), grant(qemuB), release(qemuA), release(qemuB)},
		},
		{
			name:  "admin mask r--, A B, release B then A",
			mode:  0o750,
			spec:  widenedSpec,
			steps: []shareStep{grant(qemuA), grant(qemuB), release(qemuB), release(qemuA)},
		},
		{
			name:  "admin mask r--, A, release, B, release",
			mode:  0o750,
			spec:  widenedSpec,
			steps: []shareStep{grant(qemuA), release(qemuA), grant(qemuB), release(qemuB)},
		},
		{
			name:  "admin mask r--, admin adds u:1234:x while A is in effect",
			mode:  0o750,
			spec:  widenedSpec,
			steps: []shareStep{grant(qemuA), admin("u:1234:x"), release(qemuA)},
		},
		{
			name:  "admin mask r--, B masked off already, A B, release A then B",
			mode:  0o750,
			spec:  "u::rwx,u:1000:r-x,u:64056:--x,g::r-x,g:100:rwx,m::r--,o::---",
			steps: []shareStep{grant(qemuA), grant(qemuB), release(qemuA), release(qemuB)},
		},
		{
			name:   "legacy caller, no acl, A B, release A",
			mode:   0o700,
			steps:  []shareStep{grant(qemuA), grant(qemuB), release(qemuA)},
			legacy: true,
		},
		{
			name:   "legacy caller, admin mask r--, A B, release A",
			mode:   0o750,
			spec:   widenedSpec,
			steps:  []shareStep{grant(qemuA), grant(qemuB), release(qemuA)},
			legacy: true,
		},
	}
	type subject struct {
		uid    uint32
		groups []uint32
	}
	subjects := []subject{{qemuA, nil}, {qemuB, nil}, {adminUser, nil}, {namedUser, nil}, {grpMember, []uint32{namedGrp}}}

	for fsName, root := range fsDirs(t) {
		for i, tt := range tests {
			t.Run(fsName+"/"+tt.name, func(t *testing.T) {
				mk := func(name string) string {
					p := filepath.Join(root, fmt.Sprint(name, i))
					if err := os.Mkdir(p, 0o700); err != nil {
						t.Fatal(err)
					}
					if err := os.Chmod(p, tt.mode); err != nil {
						t.Fatal(err)
					}
					if tt.spec != "" {
						run(t, "setfacl", "--set", tt.spec, p)
					}
					return p
				}
				dir, control := mk("d"), mk("control")
				fd := openPath(t, dir)

				grants := map[uint32]Change{}
				active := func(except uint32) []Change {
					var out []Change
					if tt.legacy {
						return nil
					}
					for uid, c := range grants {
						if uid != except {
							out = append(out, c)
						}
					}
					// Map order must not matter; make failures reproducible anyway.
					slices.SortFunc(out, func(a, b Change) int { return int(a.UID) - int(b.UID) })
					return out
				}
				for n, s := range tt.steps {
					switch {
					case s.admin != "":
						run(t, "setfacl", "-m", s.admin, dir)
						run(t, "setfacl", "-m", s.admin, control)
					case s.grant != 0:
						c, err := AddUserExec(fd, fdMode(t, fd), s.grant, active(s.grant)...)
						if err != nil {
							t.Fatalf("step %d: AddUserExec(%d): %v", n, s.grant, err)
						}
						grants[s.grant] = c
					default:
						c := grants[s.undo]
						delete(grants, s.undo)
						if err := Undo(fd, fdMode(t, fd), c, active(s.undo)...); err != nil {
							t.Fatalf("step %d: Undo(%+v): %v", n, c, err)
						}
						// A release replayed after a crash changes nothing.
						once := getfacl(t, dir)
						if err := Undo(fd, fdMode(t, fd), c, active(s.undo)...); err != nil {
							t.Fatalf("step %d: second Undo(%+v): %v", n, c, err)
						}
						if again := getfacl(t, dir); again != once {
							t.Errorf("step %d: second Undo(%+v) changed the ACL:\n%s\nwas:\n%s", n, c, again, once)
						}
					}
					for uid := range grants {
						if !kernelAllows(t, dir, uid, uid, nil, Exec) {
							t.Errorf("step %d (%+v): uid %d holds a grant but cannot search; ACL now:\n%s", n, s, uid, getfacl(t, dir))
						}
					}
					if s.admin != "" || s.undo != 0 {
						// The administrator's own grant survives our releases.
						if a := getfaclACL(t, control); a.find(User, adminUser) >= 0 && !kernelAllows(t, dir, adminUser, adminUser, nil, Exec) {
							t.Errorf("step %d (%+v): uid %d (granted by the administrator) cannot search; ACL now:\n%s", n, s, adminUser, getfacl(t, dir))
						}
					}
				}
				if tt.legacy {
					return
				}

				omitHeader := func(p string) string { return run(t, "getfacl", "-n", "--omit-header", p) }
				if got, want := omitHeader(dir), omitHeader(control); got != want {
					t.Errorf("getfacl at the end:\n%s\nwant (control):\n%s", got, want)
				}
				if got, want := modeOf(t, dir), modeOf(t, control); got != want {
					t.Errorf("mode at the end = %o, want %o (control)", got, want)
				}
				raw, err := getRaw(fd)
				if err != nil {
					t.Fatal(err)
				}
				cfd := openPath(t, control)
				want, err := getRaw(cfd)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, raw); diff != "" {
					t.Errorf("xattr at the end (-control +dir):\n%s", diff)
				}
				for _, s := range subjects {
					for _, p := range []Perm{Read, Exec} {
						got := kernelAllows(t, dir, s.uid, s.uid, s.groups, p)
						if want := kernelAllows(t, control, s.uid, s.uid, s.groups, p); got != want {
							t.Errorf("uid %d groups %v access %s at the end = %v, control %v", s.uid, s.groups, p, got, want)
						}
					}
				}
			})
		}
	}
}
