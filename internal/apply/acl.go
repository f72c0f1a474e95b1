package apply

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// holdACL records that p's domain holds the search grant of step s. A grant
// already recorded keeps the change it recorded, unless the plan found the
// grant missing again (then the new change is what release must undo).
func holdACL(st *journal.State, s *plan.Step, p *plan.Plan, boot string) (*journal.Entry, error) {
	id := s.Handle.ID()
	uid := s.ACL.UID
	e := st.Lookup(journal.ACLKey(id, uid))
	if e == nil && !s.ACL.Changed() {
		// Searchable through a user:<uid> entry that is not ours: the
		// admin's, and not ours to take away.
		return nil, nil
	}
	raw, err := json.Marshal(s.ACL)
	if err != nil {
		return nil, err
	}
	h := journal.Holder{Domain: p.Domain, UUID: p.UUID, BootID: boot, Kind: plan.KindParentDir}
	if e == nil {
		e = &journal.Entry{Path: s.Path, Dev: id.Dev, Ino: id.Ino, UID: s.Current.UID, GID: s.Current.GID, TargetUID: uid, ACL: raw, Holders: []journal.Holder{h}, Created: boot}
		recordIdentity(e, s.Handle)
		st.Add(e)
		return e, nil
	}
	if s.ACL.Changed() {
		e.ACL = raw
	}
	e.Holders = addHolder(e.Holders, h)
	return e, nil
}

// addACL makes the grant of step s and reports whether what was done
// differs from what was recorded (then e is updated and must be saved).
func addACL(s *plan.Step, e *journal.Entry, active []acl.Change) (bool, error) {
	if err := s.Handle.Refresh(); err != nil {
		return false, err
	}
	c, err := acl.AddUserExec(s.Handle.Fd(), s.Handle.Stat.Mode, s.ACL.UID, active...)
	if err != nil {
		if errors.Is(err, acl.ErrNotSupported) {
			return false, fmt.Errorf("QEMU (uid %d) cannot search this directory and its filesystem has no POSIX ACLs: %w; run `chmod o+x %s` or move the image", s.ACL.UID, err, s.Path)
		}
		return false, err
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	if old, _ := json.Marshal(s.ACL); string(old) == string(raw) || e == nil {
		return false, nil
	}
	e.ACL = raw
	*s.ACL = c
	return true, nil
}

func undoACLStep(s *plan.Step, active []acl.Change) error {
	if err := s.Handle.Refresh(); err != nil {
		return err
	}
	return acl.Undo(s.Handle.Fd(), s.Handle.Stat.Mode, *s.ACL, active...)
}

// activeGrants are the recorded search grants on the inode dev:ino for
// other uids than except: grants in effect, which an ACL change must
// neither take away nor leave a mask behind for (see acl.Undo).
func activeGrants(st *journal.State, dev, ino uint64, except uint32) []acl.Change {
	var out []acl.Change
	for _, e := range st.Grants(dev, ino) {
		if e.TargetUID == except {
			continue
		}
		var c acl.Change
		if json.Unmarshal(e.ACL, &c) == nil {
			out = append(out, c)
		}
	}
	return out
}
