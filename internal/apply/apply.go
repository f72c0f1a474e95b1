package apply

import (
	"errors"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// ErrConflict is wrapped when a domain needs a file with another owner than
// the one a running domain holds it with.
var ErrConflict = errors.New("held by another domain with a different owner")

// Runner carries out plans.
type Runner struct {
	Store *journal.Store
	Log   logrus.FieldLogger
	// DryRun logs what would be done and changes nothing.
	DryRun bool
	// Fault, when set, is called before every mutation of the host or the
	// journal with a running count; returning an error aborts there as if
	// the process had been killed (no rollback). Tests use it to inject
	// crashes at every point.
	Fault func(n int) error
	// SharedFS decides whether a file is on a filesystem shared between
	// hosts; nil means by statfs type. Tests override it.
	SharedFS func(*owner.Handle) bool
	// HostID names this machine in marks on shared files; "" means
	// /etc/machine-id. Tests set two to play source and destination.
	HostID string
	n      int
}

func (r *Runner) isShared(h *owner.Handle) bool {
	if r.SharedFS != nil {
		return r.SharedFS(h)
	}
	return sharedFS(h)
}

// errKilled marks an injected crash: nothing after it may run.
type errKilled struct{ err error }

func (e errKilled) Error() string { return e.err.Error() }
func (e errKilled) Unwrap() error { return e.err }

func (r *Runner) step() error {
	r.n++
	if r.Fault != nil {
		if err := r.Fault(r.n); err != nil {
			return errKilled{err}
		}
	}
	return nil
}

// Killed reports whether err is an injected crash.
func Killed(err error) bool {
	var k errKilled
	return errors.As(err, &k)
}

// Prepare makes p happen: every step with action chown or keep is recorded
// as held by p's domain, the journal is made durable, then the chowns are
// made through the plan's handles. If any chown fails, those already made
// are undone and the journal is put back as it was.
func (r *Runner) Prepare(p *plan.Plan) error {
	if r.DryRun {
		for _, s := range p.Steps {
			if s.Action == plan.Chown {
				r.Log.WithFields(logrus.Fields{"domain": p.Domain, "op": "prepare", "path": s.Path, "from": s.Current.String(), "to": s.Target.String()}).Info("dry run: would chown")
			}
		}
		return nil
	}
	if err := r.Store.Lock(); err != nil {
		return err
	}
	defer r.Store.Unlock()
	st, err := r.Store.Load()
	if err != nil {
		return err
	}
	if d := r.Store.Damaged(); len(d) > 0 {
		// Fail closed: the damaged file may hold originals of files this
		// prepare would find owned by QEMU and record wrongly.
		return fmt.Errorf("%w: %s is kept aside and may hold original owners still to give back; "+
			"inspect it (`libvirt-dac-hook status --state-file %s`), give them back (`libvirt-dac-hook restore --state-file %s`, or by hand), "+
			"then remove it: until then prepares are refused", journal.ErrDamaged, d[0], d[0], d[0])
	}
	// The plan was built without the lock: another domain's prepare or
	// release may have changed an owner or a search grant since. The
	// original owner recorded for a new entry, whether a chown is needed,
	// and whether a grant is ours to add and record, must be read now,
	// through the handle, under the lock.
	for _, s := range p.Steps {
		if (s.Action != plan.Chown && s.Action != plan.Keep && s.Action != plan.SearchACL) || s.Handle == nil {
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
		s.Current = &plan.Owner{UID: uid, GID: gid}
	}
	before := st.Clone()
	boot := r.Store.BootID

	type change struct {
		s        *plan.Step
		from, to plan.Owner
		acl      *journal.Entry // for SearchACL steps: the entry to record the change in
		mark     *mark          // for files on shared filesystems: the mark to write
		oldMark  []byte         // the mark before, to put back on rollback (nil: none)
	}
	var todo []change
	for _, s := range p.Steps {
		if s.Action == plan.SearchACL {
			e, err := holdACL(st, s, p, boot)
			if err != nil {
				return err
			}
			if s.ACL.Changed() {
				todo = append(todo, change{s: s, acl: e})
			}
			continue
		}
		if s.Action != plan.Chown && s.Action != plan.Keep {
			continue
		}
		id := s.Handle.ID()
		key := (&journal.Entry{Dev: id.Dev, Ino: id.Ino}).Key()
		e := st.Lookup(key)
		if e == nil {
			e = r.adoptStale(st, s, boot)
		}
		if e != nil {
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
				if len(live) == 0 && (s.Current.UID != e.TargetUID || s.Current.GID != e.TargetGID) &&
					(s.Current.UID != e.UID || s.Current.GID != e.GID) {
					// Left by an earlier boot or a release that died, but
					// someone (the admin) has given the file another owner
					// since: theirs is the original now, not our old record.
					e.UID, e.GID = s.Current.UID, s.Current.GID
				}
				// Nobody else on this boot holds it (an earlier boot, a
				// release that died, or this domain's own earlier
				// prepare): the target is ours now; the original stays.
				e.TargetUID, e.TargetGID = s.Target.UID, s.Target.GID
			}
			e.Holders = addHolder(e.Holders, journal.Holder{Domain: p.Domain, UUID: p.UUID, BootID: boot, Kind: s.Kind})
		} else {
			e = &journal.Entry{
				Path: s.Path, Dev: id.Dev, Ino: id.Ino,
				UID: s.Current.UID, GID: s.Current.GID,
				TargetUID: s.Target.UID, TargetGID: s.Target.GID,
				Shared:  r.isShared(s.Handle),
				Holders: []journal.Holder{{Domain: p.Domain, UUID: p.UUID, BootID: boot, Kind: s.Kind}},
				Created: boot,
			}
			e.Birth = birth(s.Handle)
			st.Add(e)
		}
		if e.Shared {
			next, raw, changed, err := r.nextMark(s, e, p.Domain, boot)
			if err != nil {
				return err
			}
			if changed {
				todo = append(todo, change{s: s, mark: &next, oldMark: raw})
			}
		}
		for _, uid := range s.LinkOwners {
			if uid != e.UID {
				// Only the file's real owner may link to it: the one before
				// QEMU got it, which only the journal knows.
				return fmt.Errorf("%s (%s): a symlink on the way is owned by uid %d, but the file belonged to uid %d before QEMU got it: a user's symlink may only lead to that user's own files: %w",
					s.Path, s.From, uid, e.UID, owner.ErrRefused)
			}
		}
		if s.Current.UID != s.Target.UID || s.Current.GID != s.Target.GID {
			todo = append(todo, change{s: s, from: *s.Current, to: *s.Target})
		}
	}
	if err := r.step(); err != nil {
		return err
	}
	if err := r.Store.Save(st); err != nil {
		return err
	}
	resave := false
	for i, c := range todo {
		if err := r.step(); err != nil {
			return err
		}
		var err error
		switch {
		case c.acl != nil:
			var actual bool
			id := c.s.Handle.ID()
			actual, err = addACL(c.s, c.acl, activeGrants(st, id.Dev, id.Ino, c.s.ACL.UID))
			resave = resave || actual
		case c.mark != nil:
			if merr := c.s.Handle.SetXattr(OwnerXattr, []byte(c.mark.String())); merr != nil {
				r.Log.WithError(merr).WithField("path", c.s.Path).Debug("no owner mark on this shared filesystem; a migration destination will not know the original owner")
				todo[i].mark = nil // nothing to undo
				todo[i].s = nil
			}
			continue
		default:
			err = c.s.Handle.Chown(c.to.UID, c.to.GID)
		}
		if err != nil {
			err = fmt.Errorf("%s (%s): %w", c.s.Path, c.s.From, err)
			var undoErrs []error
			for j := i - 1; j >= 0; j-- {
				var uerr error
				switch u := todo[j]; {
				case u.s == nil: // a mark that was never written
				case u.acl != nil:
					id := u.s.Handle.ID()
					uerr = undoACLStep(u.s, u.acl, activeGrants(before, id.Dev, id.Ino, u.s.ACL.UID))
				case u.mark != nil && u.oldMark != nil:
					uerr = u.s.Handle.SetXattr(OwnerXattr, u.oldMark)
				case u.mark != nil:
					uerr = u.s.Handle.RemoveXattr(OwnerXattr)
				default:
					uerr = u.s.Handle.Chown(u.from.UID, u.from.GID)
				}
				if uerr != nil {
					undoErrs = append(undoErrs, uerr)
				}
			}
			if len(undoErrs) > 0 {
				// Keep the records: they are what lets restore finish.
				return errors.Join(err, fmt.Errorf("undo incomplete, records kept for `libvirt-dac-hook restore --domain %s`: %w", p.Domain, errors.Join(undoErrs...)))
			}
			if serr := r.Store.Save(before); serr != nil {
				return errors.Join(err, serr)
			}
			return err
		}
		if c.acl != nil {
			log := r.Log.WithFields(logrus.Fields{"domain": p.Domain, "op": "prepare", "path": c.s.Path, "acl": fmt.Sprintf("user:%d:--x", c.s.ACL.UID)})
			log.Info("acl added")
			if len(c.s.ACL.Widened) > 0 && !c.s.ACL.Inherited {
				// POSIX ACLs have one mask for all named entries: giving it
				// x gives x to entries the admin had masked off, until release.
				log.WithField("widened", acl.ACL(c.s.ACL.Widened).String()).Warn("the ACL mask gained x, which also lets these entries search the directory until release")
			}
			continue
		}
		r.Log.WithFields(logrus.Fields{"domain": p.Domain, "op": "prepare", "path": c.s.Path, "from": c.from.String(), "to": c.to.String()}).Info("chown")
	}
	if resave {
		// The ACL changed between plan and apply; record what was really
		// done so release undoes exactly that.
		if err := r.Store.Save(st); err != nil {
			return err
		}
	}
	return nil
}

// adoptStale finds an entry recorded on an earlier boot for the same path and
// inode number (device numbers may change across boots) so a prepare after a
// reboot keeps the original owner recorded then instead of taking the QEMU
// owner it finds now. The entry is re-keyed to the current device number.
func (r *Runner) adoptStale(st *journal.State, s *plan.Step, boot string) *journal.Entry {
	id := s.Handle.ID()
	for _, e := range st.Entries {
		if e.ACL == nil && e.Path == s.Path && e.Ino == id.Ino && e.Dev != id.Dev && len(e.LiveHolders(boot)) == 0 && sameBirth(e, s.Handle) {
			st.Remove(e.Key())
			e.Dev = id.Dev
			st.Add(e)
			return e
		}
	}
	return nil
}

func addHolder(hs []journal.Holder, h journal.Holder) []journal.Holder {
	for i := range hs {
		if hs[i].Domain == h.Domain && hs[i].BootID == h.BootID {
			return hs
		}
	}
	return append(hs, h)
}

// sharedFS reports whether the inode lives on a filesystem other hosts
// mount too, where a migrated domain's destination keeps using it.
func sharedFS(h *owner.Handle) bool {
	sf, err := h.Statfs()
	if err != nil {
		return false
	}
	return IsSharedFS(int64(sf.Type))
}

// Shared filesystem magic numbers (statfs f_type).
const (
	magicNFS    = 0x6969
	magicSMB2   = 0xfe534d42
	magicCIFS   = 0xff534d42
	magicCeph   = 0x00c36400
	magicGFS2   = 0x01161970
	magicOCFS2  = 0x7461636f
	magicFUSE   = 0x65735546 // GlusterFS native mounts are FUSE
	magicLustre = 0x0bd00bd0
	magicGPFS   = 0x47504653
	magicBeeGFS = 0x19830326
)

// IsSharedFS reports whether a statfs type is a filesystem shared between
// hosts.
func IsSharedFS(t int64) bool {
	switch uint32(t) {
	case magicNFS, magicSMB2, magicCIFS, magicCeph, magicGFS2, magicOCFS2, magicFUSE, magicLustre, magicGPFS, magicBeeGFS:
		return true
	}
	return false
}

// Release gives back everything domain holds. reason is the 4th hook
// argument ("-" or a shutoff reason such as "migrated"). Files on shared
// filesystems are not given back after a migration: the destination's QEMU
// uses them now. Release is idempotent and best-effort: it gives back every
// entry it can and joins the errors of those it cannot, keeping their
// records for a later restore.
func (r *Runner) Release(domain, reason string) error {
	if r.DryRun {
		r.Log.WithFields(logrus.Fields{"domain": domain, "op": "release"}).Info("dry run: would restore what the journal holds for the domain")
		return nil
	}
	return r.restore(func(e *journal.Entry) bool { return e.HeldBy(domain) }, domain, reason == "migrated", "release")
}

// Selector chooses entries for Restore.
type Selector struct {
	All    bool
	Stale  bool   // entries no domain of this boot holds
	Domain string // entries held by this domain
}

// Restore gives back the entries the selector picks, dropping their holders.
// `restore --stale` after a reboot, `--domain NAME` after a lost release.
func (r *Runner) Restore(sel Selector) error {
	boot := r.Store.BootID
	match := func(e *journal.Entry) bool {
		switch {
		case sel.All:
			return true
		case sel.Domain != "":
			return e.HeldBy(sel.Domain)
		case sel.Stale:
			return len(e.LiveHolders(boot)) == 0
		}
		return false
	}
	return r.restore(match, sel.Domain, false, "restore")
}

func (r *Runner) restore(match func(*journal.Entry) bool, domain string, migrated bool, op string) error {
	if err := r.Store.Lock(); err != nil {
		return err
	}
	defer r.Store.Unlock()
	st, err := r.Store.Load()
	if err != nil {
		return err
	}
	boot := r.Store.BootID
	var give []*journal.Entry
	changed := false
	for _, e := range st.Entries {
		matched := match(e)
		if matched {
			n := len(e.Holders)
			if op == "restore" && domain == "" {
				e.Holders = nil
			} else {
				e.Holders = dropHolder(e.Holders, domain)
			}
			changed = changed || len(e.Holders) != n
		}
		// Entries nobody on this boot holds any more are given back,
		// including ones a killed release left pending.
		if len(e.LiveHolders(boot)) == 0 && (matched || len(e.Holders) == 0) {
			give = append(give, e)
		}
	}
	if !changed && len(give) == 0 {
		return nil
	}
	if err := r.step(); err != nil {
		return err
	}
	// Durably mark the holders gone before giving anything back, so a kill
	// during the give-back leaves pending entries any later run finishes.
	if changed {
		if err := r.Store.Save(st); err != nil {
			return err
		}
	}
	var errs []error
	for _, e := range give {
		if err := r.step(); err != nil {
			return err
		}
		done, err := r.giveBack(e, st, domain, migrated, op)
		if err != nil {
			errs = append(errs, err)
		}
		if done {
			st.Remove(e.Key())
		}
	}
	if err := r.step(); err != nil {
		return err
	}
	if err := r.Store.Save(st); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func dropHolder(hs []journal.Holder, domain string) []journal.Holder {
	out := hs[:0]
	for _, h := range hs {
		if h.Domain != domain {
			out = append(out, h)
		}
	}
	return out
}

// giveBack restores one entry's original owner, but only on the inode that
// was recorded. It reports whether the entry is finished with (restored, or
// impossible to restore because the file is gone or replaced).
func (r *Runner) giveBack(e *journal.Entry, st *journal.State, domain string, migrated bool, op string) (bool, error) {
	log := r.Log.WithFields(logrus.Fields{"domain": domain, "op": op, "path": e.Path})
	if e.ACL != nil {
		return r.undoACL(e, activeGrants(st, e.Dev, e.Ino, e.TargetUID), log)
	}
	h, err := owner.Open(e.Path)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			log.Warn("file is gone; nothing to restore")
			return true, nil
		}
		return false, fmt.Errorf("restore %s: %w", e.Path, err)
	}
	defer h.Close()
	id := h.ID()
	if id.Ino != e.Ino || id.Dev != e.Dev || !sameBirth(e, h) {
		log.WithField("recorded_inode", fmt.Sprintf("%d:%d", e.Dev, e.Ino)).WithField("found_inode", fmt.Sprintf("%d:%d", id.Dev, id.Ino)).
			Warn("path now names another file (replaced or moved); left alone")
		return true, nil
	}
	if e.Shared {
		if done, err := r.leaveToOtherHost(e, h, migrated, log); done || err != nil {
			return done, err
		}
	}
	uid, gid := h.Owner()
	if uid == e.UID && gid == e.GID {
		if e.Shared {
			removeMark(h, log)
		}
		return true, nil
	}
	if uid != e.TargetUID || gid != e.TargetGID {
		// Someone changed the owner while the domain ran; the admin's
		// change wins over our record.
		log.WithField("found", fmt.Sprintf("%d:%d", uid, gid)).Warn("owner changed by someone else while held; left alone")
		if e.Shared {
			removeMark(h, log)
		}
		return true, nil
	}
	if err := h.Chown(e.UID, e.GID); err != nil {
		return false, fmt.Errorf("restore %s: %w", e.Path, err)
	}
	if e.Shared {
		removeMark(h, log)
	}
	log.WithFields(logrus.Fields{"from": fmt.Sprintf("%d:%d", uid, gid), "to": fmt.Sprintf("%d:%d", e.UID, e.GID)}).Info("chown")
	return true, nil
}

// RestoreFile gives back every entry of a state file kept aside (damaged,
// but still readable, or from another state directory), then renames it
// with journal.RestoredSuffix so prepares may go on.
func (r *Runner) RestoreFile(path string) error {
	if err := r.Store.Lock(); err != nil {
		return err
	}
	defer r.Store.Unlock()
	st, err := journal.LoadFile(path)
	if err != nil {
		return fmt.Errorf("%w; if it cannot be read at all, give back the owners it lists by hand and remove it", err)
	}
	var errs []error
	for _, e := range st.Entries {
		if _, err := r.giveBack(e, st, "", false, "restore"); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.Rename(path, path+journal.RestoredSuffix); err != nil {
		return fmt.Errorf("owners restored, but: %w", err)
	}
	return nil
}
