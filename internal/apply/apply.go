package apply

import (
	"errors"
	"fmt"

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
	n        int
}

// OwnerXattr records a file's original owner on the file itself, for files
// on shared filesystems: after a migration the destination host has no
// journal entry and finds the file owned by QEMU, and reads the true
// original here. It is in the trusted namespace, which only root can
// write, so QEMU cannot forge it. Filesystems without trusted xattrs (NFS)
// do not get it; see the README.
const OwnerXattr = "trusted.libvirt-dac-hook.owner"

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
			c := acl.PlanAddUserExec(a, s.Target.UID)
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
		xattr    bool           // record the original on the file (shared filesystems)
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
			for _, h := range e.LiveHolders(boot) {
				if h.Domain != p.Domain && (e.TargetUID != s.Target.UID || e.TargetGID != s.Target.GID) {
					return fmt.Errorf("%s (%s): %w: domain %s holds it as %d:%d, domain %s needs %s", s.Path, s.From, ErrConflict, h.Domain, e.TargetUID, e.TargetGID, p.Domain, s.Target)
				}
			}
			if len(e.LiveHolders(boot)) == 0 {
				// Nobody on this boot holds it: whoever held it before a
				// reboot, or a release that died, left it to us. The
				// recorded original stays; the target is ours now.
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
			if e.Shared {
				if o, ok := readOwnerXattr(s.Handle); ok {
					// Recorded by the host this domain migrated from.
					e.UID, e.GID = o.UID, o.GID
				}
			}
			st.Add(e)
		}
		if s.Current.UID != s.Target.UID || s.Current.GID != s.Target.GID {
			todo = append(todo, change{s: s, from: *s.Current, to: *s.Target, xattr: e.Shared})
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
		if c.acl != nil {
			var actual bool
			actual, err = addACL(c.s, c.acl)
			resave = resave || actual
		} else {
			if c.xattr {
				writeOwnerXattr(c.s.Handle, c.from, r.Log)
			}
			err = c.s.Handle.Chown(c.to.UID, c.to.GID)
		}
		if err != nil {
			err = fmt.Errorf("%s (%s): %w", c.s.Path, c.s.From, err)
			var undoErrs []error
			for j := i - 1; j >= 0; j-- {
				var uerr error
				if todo[j].acl != nil {
					uerr = undoACLStep(todo[j].s, todo[j].acl)
				} else {
					uerr = todo[j].s.Handle.Chown(todo[j].from.UID, todo[j].from.GID)
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
			r.Log.WithFields(logrus.Fields{"domain": p.Domain, "op": "prepare", "path": c.s.Path, "acl": fmt.Sprintf("user:%d:--x", c.s.Target.UID)}).Info("acl added")
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
		if e.ACL == nil && e.Path == s.Path && e.Ino == id.Ino && e.Dev != id.Dev && len(e.LiveHolders(boot)) == 0 {
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
		done, err := r.giveBack(e, domain, migrated, op)
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
func (r *Runner) giveBack(e *journal.Entry, domain string, migrated bool, op string) (bool, error) {
	log := r.Log.WithFields(logrus.Fields{"domain": domain, "op": op, "path": e.Path})
	if e.ACL != nil {
		return r.undoACL(e, log)
	}
	if migrated && e.Shared {
		log.Info("migrated: left with the destination's owner on the shared filesystem")
		return true, nil
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
	if id.Ino != e.Ino || id.Dev != e.Dev {
		log.WithField("recorded_inode", fmt.Sprintf("%d:%d", e.Dev, e.Ino)).WithField("found_inode", fmt.Sprintf("%d:%d", id.Dev, id.Ino)).
			Warn("path now names another file (replaced or moved); left alone")
		return true, nil
	}
	uid, gid := h.Owner()
	if uid == e.UID && gid == e.GID {
		return true, nil
	}
	if uid != e.TargetUID || gid != e.TargetGID {
		// Someone changed the owner while the domain ran; the admin's
		// change wins over our record.
		log.WithField("found", fmt.Sprintf("%d:%d", uid, gid)).Warn("owner changed by someone else while held; left alone")
		return true, nil
	}
	if err := h.Chown(e.UID, e.GID); err != nil {
		return false, fmt.Errorf("restore %s: %w", e.Path, err)
	}
	if e.Shared {
		if err := h.RemoveXattr(OwnerXattr); err != nil {
			log.WithError(err).Warn("could not remove the owner record on the file")
		}
	}
	log.WithFields(logrus.Fields{"from": fmt.Sprintf("%d:%d", uid, gid), "to": fmt.Sprintf("%d:%d", e.UID, e.GID)}).Info("chown")
	return true, nil
}

func readOwnerXattr(h *owner.Handle) (plan.Owner, bool) {
	b, ok, err := h.GetXattr(OwnerXattr)
	if err != nil || !ok {
		return plan.Owner{}, false
	}
	var o plan.Owner
	if _, err := fmt.Sscanf(string(b), "%d:%d", &o.UID, &o.GID); err != nil {
		return plan.Owner{}, false
	}
	return o, true
}

func writeOwnerXattr(h *owner.Handle, o plan.Owner, log logrus.FieldLogger) {
	if _, ok, _ := h.GetXattr(OwnerXattr); ok {
		return // the migration source's record of the true original stays
	}
	if err := h.SetXattr(OwnerXattr, []byte(o.String())); err != nil {
		log.WithError(err).WithField("path", h.Path).Debug("filesystem keeps no owner record; a migration destination will not know the original owner")
	}
}
