package plan

import (
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// SearchACL is the action for a directory QEMU cannot search: add
// user:<uid>:--x to its access ACL, and remove exactly that at release.
const SearchACL Action = "acl"

// KindParentDir is the kind of a directory step.
const KindParentDir = string(domain.KindParentDir)

// parents makes sure QEMU (uid with gids) can reach st: every ancestor
// directory must grant it search permission. Where one does not, or does
// only through a user:<uid> entry (perhaps one we added earlier), a
// SearchACL step is added so the grant is held and given back in step with
// the files. Directories are looked at once per uid per plan.
func (b *builder) parents(st *Step, uid uint32, gids []uint32) error {
	var dirs []string
	for d := filepath.Dir(st.Path); ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == "/" {
			break
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		key := fmt.Sprintf("%d:%s", uid, d)
		if b.dirsDone[key] {
			continue
		}
		b.dirsDone[key] = true
		if err := b.parent(st, d, uid, gids); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) parent(st *Step, dir string, uid uint32, gids []uint32) error {
	from := "parent of " + st.Path
	if st.Kind == "" {
		from = st.From
	}
	r := &domain.Resource{Kind: domain.KindParentDir, From: from}
	h, err := owner.Open(dir)
	if err != nil {
		return b.fail(r, dir, err)
	}
	mode := h.Stat.Mode
	a, err := acl.Get(h.Fd(), mode)
	if err != nil {
		h.Close()
		return b.fail(r, dir, err)
	}
	duid, dgid := h.Owner()
	allowed := a.Allowed(duid, dgid, uid, gids, acl.Exec)
	// A user:<uid> entry can grant search (maybe ours, from another
	// domain) or deny it; only when search is allowed with and without
	// it is the directory none of our business.
	if allowed && withoutUser(a, uid).Allowed(duid, dgid, uid, gids, acl.Exec) {
		h.Close()
		return nil
	}
	if !allowed && !b.env.ParentACL {
		h.Close()
		return b.fail(r, dir, fmt.Errorf("directory is not searchable by uid %d, so QEMU cannot reach %s: run `setfacl -m u:%d:x %s` (or set parent_search_acl = 1)", uid, st.Path, uid, dir))
	}
	if err := linkOwnersCanSearch(st, dir, a, duid, dgid, uid); err != nil {
		h.Close()
		return b.fail(r, dir, err)
	}
	if err := b.env.Policy.Check(h, owner.Want{Types: domain.TypeDir, Kind: domain.KindParentDir}); err != nil {
		h.Close()
		return b.fail(r, dir, fmt.Errorf("QEMU (uid %d) needs search permission on it to reach %s: %w", uid, st.Path, err))
	}
	c := acl.PlanAddUserExec(a, uid)
	step := &Step{
		Path: dir, Kind: KindParentDir, From: r.From, Action: SearchACL,
		Reason:  fmt.Sprintf("add ACL user:%d:--x", uid),
		Current: &owner.UIDGID{UID: duid, GID: dgid},
		Handle:  h, ACL: &c,
	}
	if !c.Changed() {
		step.Reason = fmt.Sprintf("searchable through ACL user:%d", uid)
	} else if len(c.Widened) > 0 {
		step.Reason += fmt.Sprintf("; the mask gains x, which also gives %s search until release", acl.ACL(c.Widened).String())
	}
	if err := b.countStep(step); err != nil {
		h.Close()
		return b.fail(r, dir, err)
	}
	b.plan.Steps = append(b.plan.Steps, step)
	return nil
}

// withoutUser returns a without a named entry for uid.
func withoutUser(a acl.ACL, uid uint32) acl.ACL {
	out := make(acl.ACL, 0, len(a))
	for _, e := range a {
		if e.Tag == acl.User && e.ID == uid {
			continue
		}
		out = append(out, e)
	}
	return out
}

// linkOwnersCanSearch refuses to open dir for QEMU when a user's symlink
// led to st and that user could not search dir: the link would turn the
// hook into a way past a directory (root's 0700 home, say) its owner was
// kept out of. The decision is the kernel's (acl.Allowed) for the link
// owner's uid and groups.
func linkOwnersCanSearch(st *Step, dir string, a acl.ACL, duid, dgid, qemu uint32) error {
	if st.Handle == nil {
		return nil
	}
	for _, uid := range owner.LinkUIDs(st.Handle) {
		if a.Allowed(duid, dgid, uid, userGroups(uid), acl.Exec) {
			continue
		}
		link := ""
		for _, l := range st.Handle.Links {
			if l.UID == uid {
				link = l.Path
				break
			}
		}
		return fmt.Errorf("QEMU would need search permission on it to reach %s, but uid %d, who owns the symlink %s leading there, cannot search it; the hook grants no access a link's owner lacks: point the XML at a path that owner can reach, or grant it by hand (`setfacl -m u:%d:x %s`): %w",
			st.Path, uid, link, qemu, dir, owner.ErrRefused)
	}
	return nil
}

// userGroups is the primary and supplementary groups of uid from the
// password and group databases; nil when uid has no entry, which can only
// make the link owner less able to search.
func userGroups(uid uint32) []uint32 {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil
	}
	ids, err := u.GroupIds()
	if err != nil {
		ids = []string{u.Gid}
	}
	var out []uint32
	for _, s := range ids {
		if g, err := strconv.ParseUint(s, 10, 32); err == nil {
			out = append(out, uint32(g))
		}
	}
	return out
}
