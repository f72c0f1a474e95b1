package acl

// Change records what AddUserExec did to an ACL, so that Undo takes back
// that and nothing else. It is stored in the hook's journal as JSON; all
// fields added later are omitempty, so older records still decode and
// undo as before.
//
// The mask is shared: every named entry and group:: count only through
// it, so it can be "ours" (created or widened by a grant) while other
// grants or the administrator's entries rely on it. Undo therefore never
// blindly subtracts bits from the mask:
//   - AddedMask (the ACL was minimal, we created the mask): when no named
//     entries remain, the mask is dropped and the ACL is minimal again;
//     otherwise it is recomputed as setfacl does (group:: | every named
//     entry).
//   - MaskChanged (we added x to an existing mask): x is taken back unless
//     an entry with x still needs it: one of another active grant, or any
//     other than those in Widened, which had x masked off before and go
//     back to that (it appeared later: the administrator's).
//
// A grant made while another of ours owns the mask inherits that
// ownership (Inherited), so that the one undone last restores the mask,
// whatever the order of release.
type Change struct {
	// UID is the user that was granted search permission.
	UID uint32 `json:"uid"`
	// AddedEntry: the user:UID entry did not exist and was created.
	AddedEntry bool `json:"added_entry,omitempty"`
	// AddedPerm: the bits added to user:UID (Exec, or 0 if it already had it).
	AddedPerm Perm `json:"added_perm,omitempty"`
	// AddedMask: the ACL was minimal and a mask:: was created (by this
	// grant, or, if Inherited, by one still active when it was made).
	AddedMask bool `json:"added_mask,omitempty"`
	// MaskChanged: an existing mask:: gained bits (MaskAddedPerm), by this
	// grant or, if Inherited, by one still active when it was made.
	MaskChanged bool `json:"mask_changed,omitempty"`
	// OldMask is the group class before the change (before the inherited
	// grant's change, if Inherited): the old mask, or group:: when
	// AddedMask (the group bits of st_mode in both cases). Informational.
	OldMask Perm `json:"old_mask"`
	// MaskAddedPerm: the bits the mask has beyond OldMask because of us.
	MaskAddedPerm Perm `json:"mask_added_perm,omitempty"`
	// Widened lists the entries (user:UID included) that had x masked off
	// before the mask gained x, with their permissions then. Undo masks
	// them off again; any other entry with x keeps the mask's x.
	Widened []Entry `json:"widened,omitempty"`
	// Inherited: the mask fields were taken over from grants still active
	// when this one was made (see AddUserExec). Such a Change counts as a
	// change even if the ACL already granted UID search, because undoing
	// it may restore the mask.
	Inherited bool `json:"inherited,omitempty"`
}

// Changed reports whether c altered the ACL, or took over the mask from
// another grant; only then is there something to undo.
func (c Change) Changed() bool {
	return c.AddedEntry || c.AddedPerm != 0 || c.AddedMask || c.MaskChanged || c.Inherited
}

// widened reports whether the entry identified by e's tag and id is in
// c.Widened.
func (c Change) widened(e Entry) bool {
	for _, w := range c.Widened {
		if w.Tag == e.Tag && (!e.Tag.qualified() || w.ID == e.ID) {
			return true
		}
	}
	return false
}

// inherit makes c, a grant that left the mask as it was, the co-owner of
// whatever mask bits the active grants of other uids own.
func (c *Change) inherit(active []Change) {
	for _, d := range active {
		if d.UID == c.UID || !(d.AddedMask || d.MaskChanged) {
			continue
		}
		if !c.Inherited || (d.AddedMask && !c.AddedMask) {
			c.OldMask = d.OldMask
		}
		c.Inherited = true
		c.MaskAddedPerm |= d.MaskAddedPerm
		c.AddedMask = c.AddedMask || d.AddedMask
		if d.MaskChanged {
			c.MaskChanged = true
			for _, w := range d.Widened {
				if !c.widened(w) {
					c.Widened = append(c.Widened, w)
				}
			}
		}
	}
	if c.AddedMask {
		// A mask we created is recomputed or dropped as a whole; there is
		// no admin mask to restore.
		c.MaskChanged, c.Widened = false, nil
	}
}

// maskLimited reports whether the mask limits entries with this tag.
func maskLimited(t Tag) bool { return t == User || t == GroupObj || t == Group }

// addUserExec is the pure core of AddUserExec.
func addUserExec(a ACL, uid uint32, active []Change) (ACL, Change) {
	a = a.clone()
	c := Change{UID: uid, OldMask: a.GroupClass()}
	m := a.find(Mask, 0)
	if m >= 0 && a[m].Perm&Exec == 0 {
		// Recorded before our entry changes, so that an existing
		// user:<uid> entry with x (masked off until now) is listed too.
		for _, e := range a {
			if maskLimited(e.Tag) && e.Perm&Exec != 0 {
				c.Widened = append(c.Widened, e)
			}
		}
	}
	if i := a.find(User, uid); i >= 0 {
		c.AddedPerm = Exec &^ a[i].Perm
		a[i].Perm |= Exec
	} else {
		a = a.insert(Entry{Tag: User, ID: uid, Perm: Exec})
		c.AddedEntry, c.AddedPerm = true, Exec
	}
	switch m = a.find(Mask, 0); {
	case m < 0:
		// The ACL was minimal. Its mask must cover group:: so the owning
		// group keeps exactly what it had (effective = group:: & mask),
		// plus x for our entry. st_mode's group bits will show the mask.
		g, _ := a.perm(GroupObj)
		a = a.insert(Entry{Tag: Mask, Perm: g | Exec})
		c.AddedMask, c.MaskAddedPerm = true, Exec&^g
	case a[m].Perm&Exec == 0:
		a[m].Perm |= Exec
		c.MaskChanged, c.MaskAddedPerm = true, Exec
	default:
		c.inherit(active)
	}
	return a, c
}

// undo is the pure core of Undo.
func undo(a ACL, c Change, active []Change) ACL {
	a = a.clone()
	if !c.Changed() {
		return a
	}
	if i := a.find(User, c.UID); i >= 0 {
		if c.AddedEntry {
			a = append(a[:i], a[i+1:]...)
		} else {
			a[i].Perm &^= c.AddedPerm
		}
	}
	m := a.find(Mask, 0)
	if m < 0 {
		return a
	}
	switch {
	case c.AddedMask:
		named, union := false, Perm(0)
		for _, e := range a {
			switch e.Tag {
			case User, Group:
				named = true
				union |= e.Perm
			case GroupObj:
				union |= e.Perm
			}
		}
		if !named {
			return append(a[:m], a[m+1:]...)
		}
		// Entries added since (another grant, the administrator's) need
		// the mask; setfacl would have computed this one for them.
		a[m].Perm = union
	case c.MaskChanged:
		if !maskNeeded(a, c, active) {
			a[m].Perm &^= c.MaskAddedPerm
		}
	}
	return a
}

// maskNeeded reports whether some entry of a (after c's own entry was
// undone) still needs the bits c added to an existing mask.
func maskNeeded(a ACL, c Change, active []Change) bool {
	for _, e := range a {
		if !maskLimited(e.Tag) || e.Perm&c.MaskAddedPerm == 0 {
			continue
		}
		if e.Tag == User {
			if e.ID == c.UID && !c.Inherited {
				// What is left of our entry had these bits before we
				// widened the mask: masked off then, masked off again.
				// (Records from before Widened listed user:UID.)
				continue
			}
			for _, d := range active {
				if d.UID == e.ID && d.UID != c.UID {
					return true
				}
			}
		}
		if !c.widened(e) {
			return true
		}
	}
	return false
}

func equal(a, b ACL) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// PlanAddUserExec returns the Change AddUserExec would make to a with the
// same active grants, without touching anything; the hook journals it
// before making the change.
func PlanAddUserExec(a ACL, uid uint32, active ...Change) Change {
	_, c := addUserExec(a, uid, active)
	return c
}
