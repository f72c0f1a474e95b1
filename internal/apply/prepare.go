package apply

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cluster"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// Prepare makes p happen, all or nothing: under the lock it refreshes what
// the plan read without it, records every file as held by p's domain (and
// the original owner of files nobody held), makes the journal durable, and
// only then changes the host through the plan's handles. If a change fails,
// the ones already made are undone and the journal is put back as it was.
func (r *Runner) Prepare(p *plan.Plan) error {
	if r.DryRun {
		r.logDryRun(p)
		return nil
	}
	if err := r.Store.Lock(); err != nil {
		return err
	}
	defer r.Store.Unlock()
	st, err := r.loadForPrepare()
	if err != nil {
		return err
	}
	// The cluster records first: another host's prepare or release may
	// change an owner right up to its unlock, and refresh must see that.
	defer r.closeSpaces()
	if err := r.openSpaces(r.sharedFiles(p)); err != nil {
		return err
	}
	if err := refresh(st, p); err != nil {
		return err
	}
	before := st.Clone()
	todo, err := r.record(st, p)
	if err != nil {
		return err
	}
	if err := r.step(); err != nil {
		return err
	}
	if err := r.Store.Save(st); err != nil {
		return err
	}
	if err := r.carryOut(p, todo, before); err != nil {
		return err
	}
	for _, c := range todo {
		if g, ok := c.(*grantChange); ok && g.resave {
			// The ACL changed between plan and apply; record what was
			// really done so release undoes exactly that.
			return r.Store.Save(st)
		}
	}
	return nil
}

func (r *Runner) logDryRun(p *plan.Plan) {
	for _, s := range p.Steps {
		if s.Action == plan.Chown {
			r.Log.WithFields(logrus.Fields{"domain": p.Domain, "op": r.op(), "path": s.Path, "from": s.Current.String(), "to": s.Target.String()}).Info("dry run: would chown")
		}
	}
}

// loadForPrepare reads the journal and fails closed when a damaged copy is
// kept aside: it may hold originals of files this prepare would find owned
// by QEMU and record wrongly.
func (r *Runner) loadForPrepare() (*journal.State, error) {
	st, err := r.Store.Load()
	if err != nil {
		return nil, err
	}
	if d := r.Store.Damaged(); len(d) > 0 {
		return nil, fmt.Errorf("%w: %s is kept aside and may hold original owners still to give back; "+
			"inspect it (`libvirt-dac-hook status --state-file %s`), give them back (`libvirt-dac-hook restore --state-file %s`, or by hand), "+
			"then remove it: until then prepares are refused", journal.ErrDamaged, d[0], d[0], d[0])
	}
	return st, nil
}

// refresh re-reads, under the lock, what the plan read without it: another
// domain's prepare or release may have changed an owner or a search grant
// since. The original owner recorded for a new entry, whether a chown is
// needed, and whether a grant is ours to add, are decided on these values.
func refresh(st *journal.State, p *plan.Plan) error {
	for _, s := range p.Steps {
		if (!holds(s) && s.Action != plan.SearchACL) || s.Handle == nil {
			continue
		}
		if err := s.Handle.Refresh(); err != nil {
			return fmt.Errorf("%s (%s): %w", s.Path, s.From, err)
		}
		if s.Action == plan.SearchACL {
			a, err := acl.Get(s.Handle.Fd(), s.Handle.Stat.Mode)
			if err != nil {
				return fmt.Errorf("%s (%s): %w", s.Path, s.From, err)
			}
			id := s.Handle.ID()
			c := acl.PlanAddUserExec(a, s.ACL.UID, activeGrants(st, id.Dev, id.Ino, s.ACL.UID)...)
			s.ACL = &c
			continue
		}
		uid, gid := s.Handle.Owner()
		s.Current = &owner.UIDGID{UID: uid, GID: gid}
	}
	return nil
}

// record enters every step of p into st as held by p's domain and returns
// the changes that carry the plan out, in plan order.
func (r *Runner) record(st *journal.State, p *plan.Plan) ([]change, error) {
	boot := r.Store.BootID
	var todo []change
	for _, s := range p.Steps {
		switch {
		case s.Action == plan.SearchACL:
			e, err := holdACL(st, s, p, boot)
			if err != nil {
				return nil, err
			}
			if s.ACL.Changed() {
				id := s.Handle.ID()
				todo = append(todo, &grantChange{s: s, entry: e, active: activeGrants(st, id.Dev, id.Ino, s.ACL.UID)})
			}
		case holds(s):
			cs, err := r.recordFile(st, s, p, boot)
			if err != nil {
				return nil, err
			}
			todo = append(todo, cs...)
		}
	}
	return todo, nil
}

// recordFile records one file held by p's domain: a new entry keeps the
// owner found now as the original; an existing one gains a holder, after
// checking that every running holder needs the same owner.
func (r *Runner) recordFile(st *journal.State, s *plan.Step, p *plan.Plan, boot string) ([]change, error) {
	id := s.Handle.ID()
	e := st.Lookup(journal.Key(id))
	if e == nil {
		e = r.adoptStale(st, s, boot)
	}
	// A file the domain holds already (grant of a new overlay whose chain
	// leads into the running disk) is QEMU's own to write: nothing to seal.
	held := r.Op == "grant" && e != nil && holdsLive(e, p.Domain, boot)
	if e == nil {
		e = &journal.Entry{
			Path: s.Path, Dev: id.Dev, Ino: id.Ino,
			UID: s.Current.UID, GID: s.Current.GID,
			TargetUID: s.Target.UID, TargetGID: s.Target.GID,
			Shared:  r.isShared(s.Handle),
			Holders: []journal.Holder{{Domain: p.Domain, UUID: p.UUID, BootID: boot, Kind: s.Kind}},
			Created: boot,
		}
		recordIdentity(e, s.Handle)
		recordPerms(e, s)
		st.Add(e)
	} else if err := joinHolders(e, s, p, boot); err != nil {
		return nil, err
	}
	var todo []change
	if e.Shared {
		if strings.Contains(s.Path, "/"+cluster.DirName+"/") {
			return nil, fmt.Errorf("%s (%s): is in a directory of cluster records: %w", s.Path, s.From, owner.ErrRefused)
		}
		c, err := r.joinRecord(s, e, p, boot)
		if err != nil {
			return nil, err
		}
		todo = append(todo, c)
		// An incoming migration: the same domain runs on another host,
		// whose QEMU has the image open for writing, as it may; the
		// chain libvirt opens here is checked again at start begin.
		held = held || c.incoming(p.Domain, r.Host())
	}
	// The owner rule for header-named files judges by original owners,
	// which only the journal knows: the plan saw current ones.
	if err := s.HeaderCheck.Judge(recordedOwner(st)); err != nil {
		return nil, fmt.Errorf("%s: %w", s.From, err)
	}
	for _, uid := range s.LinkOwners {
		if uid != e.UID {
			// Only the file's real owner may link to it: the one before
			// QEMU got it, which only the journal knows.
			return nil, fmt.Errorf("%s (%s): a symlink on the way is owned by uid %d, but the file belonged to uid %d before QEMU got it: a user's symlink may only lead to that user's own files: %w",
				s.Path, s.From, uid, e.UID, owner.ErrRefused)
		}
	}
	if needsChown(s) {
		todo = append(todo, &chownChange{s: s, from: *s.Current, to: *s.Target})
	}
	if s.Header && !held {
		todo = append(todo, &sealChange{s: s})
	}
	return todo, nil
}

// joinHolders adds p's domain to an existing entry. Every other domain
// holding it on this boot must need the same owner; when none does, the
// entry's target becomes this domain's (its original stays, unless an
// administrator gave the file a new owner after the last holder left).
func joinHolders(e *journal.Entry, s *plan.Step, p *plan.Plan, boot string) error {
	live := e.LiveHolders(boot)
	others := 0
	for _, h := range live {
		if h.Domain == p.Domain {
			continue
		}
		if e.TargetUID != s.Target.UID || e.TargetGID != s.Target.GID {
			return fmt.Errorf("%s (%s): %w: domain %s holds it as %d:%d, domain %s needs %s", s.Path, s.From, ErrConflict, h.Domain, e.TargetUID, e.TargetGID, p.Domain, s.Target)
		}
		others++
	}
	if others == 0 {
		cur := *s.Current
		if len(live) == 0 && cur != (owner.UIDGID{UID: e.TargetUID, GID: e.TargetGID}) && cur != (owner.UIDGID{UID: e.UID, GID: e.GID}) {
			// Left by an earlier boot or a release that died, but someone
			// (the admin) has given the file another owner since: theirs
			// is the original now, not our old record.
			e.UID, e.GID = cur.UID, cur.GID
			e.Perms = nil
			recordPerms(e, s)
		}
		e.TargetUID, e.TargetGID = s.Target.UID, s.Target.GID
	}
	e.Holders = addHolder(e.Holders, journal.Holder{Domain: p.Domain, UUID: p.UUID, BootID: boot, Kind: s.Kind})
	return nil
}

// recordPerms records the mode and ACL of a file that is not QEMU's user's
// yet: while QEMU owns it, it can chmod it and add ACL entries (a
// compromised one would add one for an accomplice), and release puts
// these back. A file that already had the owner QEMU gets (user and group) is its own
// to change. A
// filesystem that will not say (a FUSE one refusing getxattr) leaves them
// unknown, as in entries of earlier versions: the owner is still given
// back, and the domain still starts.
func recordPerms(e *journal.Entry, s *plan.Step) {
	if e.UID == s.Target.UID && e.GID == s.Target.GID {
		return
	}
	if p, err := s.Handle.Perms(); err == nil {
		e.Perms = &p
	}
}

// carryOut makes the recorded changes in order. When one fails, those
// made are undone in reverse and the journal is put back to before; if an
// undo fails too, the records stay, because they are what lets restore
// finish the job.
func (r *Runner) carryOut(p *plan.Plan, todo []change, before *journal.State) error {
	log := r.Log.WithFields(logrus.Fields{"domain": p.Domain, "op": r.op()})
	for i, c := range todo {
		if err := r.step(); err != nil {
			return err
		}
		if err := c.do(); err != nil {
			s := c.step()
			err = fmt.Errorf("%s (%s): %w", s.Path, s.From, err)
			var undoErrs []error
			for j := i - 1; j >= 0; j-- {
				if uerr := todo[j].undo(); uerr != nil {
					undoErrs = append(undoErrs, uerr)
				}
			}
			if len(undoErrs) > 0 {
				return errors.Join(err, fmt.Errorf("undo incomplete, records kept for `libvirt-dac-hook restore --domain %s`: %w", p.Domain, errors.Join(undoErrs...)))
			}
			if serr := r.Store.Save(before); serr != nil {
				return errors.Join(err, serr)
			}
			return err
		}
		c.logDone(log)
	}
	return nil
}

// adoptStale finds an entry recorded on an earlier boot for the same path and
// inode number (device numbers may change across boots) so a prepare after a
// reboot keeps the original owner recorded then instead of taking the QEMU
// owner it finds now. The entry is re-keyed to the current device number.
func (r *Runner) adoptStale(st *journal.State, s *plan.Step, boot string) *journal.Entry {
	id := s.Handle.ID()
	for _, e := range st.ByInode(id.Ino) {
		if e.Path == s.Path && e.Dev != id.Dev && len(e.LiveHolders(boot)) == 0 && owner.SameBirth(e.Birth, s.Handle) {
			st.Remove(e.Key())
			e.Dev = id.Dev
			st.Add(e)
			return e
		}
	}
	return nil
}

// recordedOwner answers, from st, who owned an inode before QEMU got it.
func recordedOwner(st *journal.State) func(dev, ino uint64) (uid, gid uint32, ok bool) {
	return func(dev, ino uint64) (uint32, uint32, bool) {
		e := st.Lookup(journal.Key(owner.ID{Dev: dev, Ino: ino}))
		if e == nil {
			return 0, 0, false
		}
		return e.UID, e.GID, true
	}
}

// holdsLive reports whether domain holds e on boot.
func holdsLive(e *journal.Entry, domain, boot string) bool {
	for _, h := range e.LiveHolders(boot) {
		if h.Domain == domain {
			return true
		}
	}
	return false
}

func addHolder(hs []journal.Holder, h journal.Holder) []journal.Holder {
	for i := range hs {
		if hs[i].Domain == h.Domain && hs[i].BootID == h.BootID {
			return hs
		}
	}
	return append(hs, h)
}
