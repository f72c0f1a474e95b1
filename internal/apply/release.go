package apply

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// Verdict is what a release does with one recorded entry.
type Verdict string

// Verdicts.
const (
	GiveBack Verdict = "chown"      // the file gets its original owner back
	Ungrant  Verdict = "acl-remove" // the search grant is taken off the directory
	Keep     Verdict = "keep"       // another domain or host still uses it
	Already  Verdict = "done"       // it has its original owner already
	Leave    Verdict = "leave"      // someone else gave it an owner since: theirs stays
	Gone     Verdict = "gone"       // the file is gone, or its path names another file
)

// Decision is what release decides for one entry, and why. The dry run
// prints decisions; release carries them out. Both come from decide.
type Decision struct {
	Entry   *journal.Entry `json:"-"`
	Path    string         `json:"path"`
	Kind    string         `json:"kind,omitempty"`
	Verdict Verdict        `json:"action"`
	Reason  string         `json:"reason,omitempty"`
	Current *owner.UIDGID  `json:"current,omitempty"`
	// To is the owner the file ends with (its original for GiveBack).
	To owner.UIDGID `json:"target"`
	// Original is the owner recorded before QEMU got the file.
	Original owner.UIDGID `json:"original"`
	// Perms, when set, says the file's mode or ACL changed while QEMU
	// owned it and is put back: "mode 0666 acl u::rw-,u:4242:rw-,... →
	// mode 0600".
	Perms string `json:"perms,omitempty"`

	handle *owner.Handle
	record *recordUpdate // shared filesystems: the cluster record's update
	unmark bool          // remove an earlier version's owner mark
	grant  *acl.Change
	active []acl.Change
	finish bool // the entry is finished with and is removed
	perms  *owner.Perms
}

// Release gives back everything domain holds. reason is libvirt's (the
// 4th hook argument, ReasonNone before libvirt 10.5). Files on shared
// filesystems are not given back after a migration: the destination's QEMU
// uses them now. Release is idempotent and best-effort: it gives back every
// entry it can and joins the errors of those it cannot, keeping their
// records for a later restore.
func (r *Runner) Release(domain string, reason Reason) error {
	if r.DryRun {
		r.Log.WithFields(logrus.Fields{"domain": domain, "op": "release"}).Info("dry run: would restore what the journal holds for the domain")
		return nil
	}
	return r.restore(selection{domain: domain, migrated: reason.Migrated(), op: "release"})
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
	return r.restore(selection{domain: sel.Domain, all: sel.All, stale: sel.Stale, op: "restore"})
}

// Revoke lets domain go of the given files early (after the admin
// detached them): the domain's holds on those inodes are dropped and files
// nobody else holds are given back, as at release.
func (r *Runner) Revoke(domain string, ids []owner.ID) error {
	keys := make(map[string]bool, len(ids))
	for _, id := range ids {
		keys[journal.Key(id)] = true
	}
	return r.restore(selection{domain: domain, keys: keys, op: "revoke"})
}

// selection is which entries a release or restore lets go of.
type selection struct {
	domain   string
	all      bool
	stale    bool
	migrated bool
	// keys, when set, limits a domain's selection to these entries.
	keys map[string]bool
	op   string
}

// pick returns the entries the selection lets go of.
func (sel selection) pick(st *journal.State, boot string) []*journal.Entry {
	switch {
	case sel.keys != nil:
		var out []*journal.Entry
		for _, e := range st.HeldBy(sel.domain) {
			if sel.keys[e.Key()] {
				out = append(out, e)
			}
		}
		return out
	case sel.all:
		return st.All()
	case sel.domain != "":
		return st.HeldBy(sel.domain)
	case sel.stale:
		return st.Unheld(boot)
	}
	return nil
}

// letGo drops the selection's holders from e and reports whether any went.
func (sel selection) letGo(e *journal.Entry) bool {
	n := len(e.Holders)
	if sel.domain == "" {
		e.Holders = nil
	} else {
		e.Holders = dropHolder(e.Holders, sel.domain)
	}
	return len(e.Holders) != n
}

// restore is release and restore: under the lock it durably drops the
// selection's holders, so a kill during the give-back leaves pending
// entries any later run finishes; then it gives back every entry nobody on
// this boot holds any more (including ones a killed release left pending)
// and durably forgets those it is finished with.
func (r *Runner) restore(sel selection) error {
	if err := r.Store.Lock(); err != nil {
		return err
	}
	defer r.Store.Unlock()
	st, err := r.Store.Load()
	if err != nil {
		return err
	}
	give, changed := r.collect(st, sel)
	if !changed && len(give) == 0 {
		return nil
	}
	defer r.closeSpaces()
	shared := map[string]uint64{}
	for _, e := range give {
		if e.Shared {
			shared[e.Path] = e.Dev
		}
	}
	if err := r.openSpaces(shared); err != nil {
		return err
	}
	if err := r.step(); err != nil {
		return err
	}
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
		done, err := r.carryOutDecision(r.decide(e, st, sel.migrated), sel)
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

// collect drops the selection's holders and returns the entries to give
// back: those nobody on this boot holds any more.
func (r *Runner) collect(st *journal.State, sel selection) (give []*journal.Entry, changed bool) {
	boot := r.Store.BootID
	seen := map[*journal.Entry]bool{}
	for _, e := range sel.pick(st, boot) {
		seen[e] = true
		if sel.letGo(e) {
			changed = true
		}
		if len(e.LiveHolders(boot)) == 0 {
			give = append(give, e)
		}
	}
	for _, e := range st.Unheld(boot) {
		if !seen[e] && len(e.Holders) == 0 {
			give = append(give, e)
		}
	}
	return give, changed
}

// PlanRelease shows what Release(domain, reason) would decide for every
// entry of st the domain holds, without changing anything: the same
// selection and the same decide as the real release.
func (r *Runner) PlanRelease(st *journal.State, domain string, reason Reason) []Decision {
	defer r.closeSpaces()
	boot := r.Store.BootID
	var out []Decision
	held := st.HeldBy(domain)
	var decided []*journal.Entry
	for _, e := range held {
		if !heldByOthers(e, domain, boot) {
			decided = append(decided, e)
		}
	}
	r.openSpacesOf(decided)
	for _, e := range held {
		var others []string
		for _, h := range e.LiveHolders(boot) {
			if h.Domain != domain {
				others = append(others, h.Domain)
			}
		}
		if len(others) > 0 {
			out = append(out, Decision{Path: e.Path, Kind: kindFor(e, domain), Verdict: Keep, Reason: "still held by " + strings.Join(others, ", "),
				To: owner.UIDGID{UID: e.TargetUID, GID: e.TargetGID}, Original: owner.UIDGID{UID: e.UID, GID: e.GID}, Current: currentOwner(e.Path)})
			continue
		}
		d := r.decide(e, st, reason.Migrated())
		if d.handle != nil {
			d.handle.Close()
		}
		d.Kind = kindFor(e, domain)
		out = append(out, d)
	}
	return out
}

// heldByOthers reports whether a domain other than domain holds e on boot.
func heldByOthers(e *journal.Entry, domain, boot string) bool {
	for _, h := range e.LiveHolders(boot) {
		if h.Domain != domain {
			return true
		}
	}
	return false
}

func kindFor(e *journal.Entry, domain string) string {
	for _, h := range e.Holders {
		if h.Domain == domain {
			return h.Kind
		}
	}
	return ""
}

func currentOwner(p string) *owner.UIDGID {
	h, err := owner.Open(p)
	if err != nil {
		return nil
	}
	defer h.Close()
	uid, gid := h.Owner()
	return &owner.UIDGID{UID: uid, GID: gid}
}

// decide works out what giving e back means now, only ever on the inode
// that was recorded. It reads the host and changes nothing; the handle it
// opens is carried in the decision for carryOutDecision.
func (r *Runner) decide(e *journal.Entry, st *journal.State, migrated bool) Decision {
	orig := owner.UIDGID{UID: e.UID, GID: e.GID}
	d := Decision{Entry: e, Path: e.Path, Original: orig, To: orig, finish: true}
	if e.ACL != nil {
		return r.decideGrant(d, e, st)
	}
	h, ok := d.locate(e, "file")
	if !ok {
		return d
	}
	if h.Path != e.Path {
		d.Path = h.Path // renamed while held
		d.Reason = "renamed from " + e.Path
	}
	d.handle = h
	uid, gid := h.Owner()
	cur := owner.UIDGID{UID: uid, GID: gid}
	d.Current = &cur
	target := owner.UIDGID{UID: e.TargetUID, GID: e.TargetGID}
	if e.Shared && r.decideShared(&d, e, h, migrated) {
		return d
	}
	orig = d.Original
	switch {
	case cur == orig:
		d.Verdict, d.Reason = Already, "already has its original owner"
	case cur == target:
		d.Verdict = GiveBack
	case r.Cooperative && cur == rootOwner && orig != rootOwner:
		d.Verdict, d.Reason = GiveBack, "libvirt restored it to root:root, not to its original owner"
	case cur.UID == target.UID:
		// Still QEMU's user's, with another group: only QEMU's user (a
		// chgrp to one of its own groups, which keeps it the file) or
		// root did that, and nobody gave the file to anyone else.
		d.Verdict, d.Reason = GiveBack, fmt.Sprintf("still QEMU's user's, with group %d instead of %d: given back", cur.GID, target.GID)
	default:
		d.Verdict, d.To = Leave, cur
		d.Reason = fmt.Sprintf("owner changed by someone else while held (found %s, QEMU had %s): left alone", cur, target)
	}
	if d.Verdict == GiveBack || d.Verdict == Already && r.Cooperative {
		d.decidePerms(e, h)
	}
	return d
}

// decidePerms puts back the mode and ACL recorded at prepare when they
// changed while QEMU owned the file. That is known by the owner release
// finds: QEMU's user, or (cooperative mode) the one libvirt's own restore
// gives, the original or root:root. QEMU's user can chmod and setfacl its
// file, so any change then may be QEMU's; an owner someone else gave
// (Leave) keeps their mode and ACL too, and once released the file is no
// longer recorded, so a change an administrator makes after release is
// never undone.
func (d *Decision) decidePerms(e *journal.Entry, h *owner.Handle) {
	if e.Perms == nil {
		return
	}
	cur, err := h.Perms()
	if err != nil {
		// Nothing to compare with: the owner still goes back.
		d.Perms = "mode and ACL unreadable (" + err.Error() + "), left as they are"
		return
	}
	if cur.Equal(*e.Perms) {
		return
	}
	d.perms = e.Perms
	d.Perms = permsString(cur) + " → " + permsString(*e.Perms)
}

// permsString shows a mode and ACL as getfacl would, numerically.
func permsString(p owner.Perms) string {
	s := fmt.Sprintf("mode %04o", p.Mode)
	if p.ACL == nil {
		return s
	}
	a, err := acl.Parse(p.ACL)
	if err != nil {
		return s + " acl unreadable"
	}
	return s + " acl " + a.String()
}

// rootOwner is what libvirt's DAC driver "restores" a file to when it
// remembers no owner (remember_owner = 0, no xattrs on NFS, block devices,
// xattrs lost in a crash).
var rootOwner = owner.UIDGID{}

// locate finds the inode e recorded (see locate); when it cannot, d says
// why and ok is false.
func (d *Decision) locate(e *journal.Entry, what string) (h *owner.Handle, ok bool) {
	loc := locate(e)
	switch {
	case loc.gone:
		d.Verdict, d.Reason = Gone, what+" is gone; nothing to restore"
	case loc.h == nil:
		d.Verdict, d.Reason, d.finish = Leave, loc.why, false
	}
	return loc.h, loc.h != nil
}

func (r *Runner) decideGrant(d Decision, e *journal.Entry, st *journal.State) Decision {
	var c acl.Change
	if err := json.Unmarshal(e.ACL, &c); err != nil {
		d.Verdict, d.Reason, d.finish = Leave, "ACL record unreadable: "+err.Error(), false
		return d
	}
	h, ok := d.locate(e, "directory")
	if !ok {
		return d
	}
	d.Path = h.Path
	d.handle, d.grant, d.Verdict = h, &c, Ungrant
	d.active = activeGrants(st, e.Dev, e.Ino, e.TargetUID)
	d.Reason = fmt.Sprintf("user:%d:--x", c.UID)
	return d
}

// carryOutDecision does what d says and logs it. It reports whether the
// entry is finished with; an error keeps it for a later restore.
func (r *Runner) carryOutDecision(d Decision, sel selection) (bool, error) {
	log := r.Log.WithFields(logrus.Fields{"domain": sel.domain, "op": sel.op, "path": d.Path})
	if d.handle != nil {
		defer d.handle.Close()
	}
	if err := d.writeRecord(true); err != nil {
		return false, fmt.Errorf("restore %s: %w", d.Path, err)
	}
	var err error
	switch d.Verdict {
	case GiveBack:
		err = d.handle.Chown(d.To.UID, d.To.GID)
		if err == nil {
			l := log.WithFields(logrus.Fields{"from": d.Current.String(), "to": d.To.String()})
			if d.Reason != "" {
				l = l.WithField("reason", d.Reason)
			}
			l.Info("chown")
		}
	case Ungrant:
		err = acl.Undo(d.handle.Fd(), d.handle.Stat.Mode, *d.grant, d.active...)
		if err == nil {
			log.WithField("acl", d.Reason).Info("acl removed")
		}
	case Keep:
		log.Info(d.Reason)
	case Leave:
		l := log.WithField("found", d.To.String())
		if d.Kind == KindLive {
			// Files of the inventory change owner for reasons of their
			// own (a tty at login): worth a trace, not a warning.
			l.Debug(d.Reason)
		} else {
			l.Warn(d.Reason)
		}
	case Gone:
		log.WithField("recorded_inode", fmt.Sprintf("%d:%d", d.Entry.Dev, d.Entry.Ino)).Warn(d.Reason)
	}
	if err == nil && d.perms != nil {
		var changed bool
		changed, err = d.handle.SetPerms(*d.perms)
		if changed {
			log.WithField("perms", d.Perms).Info("mode and ACL put back")
		}
	}
	if err != nil {
		return false, fmt.Errorf("restore %s: %w", d.Path, err)
	}
	if d.unmark {
		removeMark(d.handle, log)
	}
	if err := d.writeRecord(false); err != nil {
		// The file has its owner; a later release or restore forgets
		// the record, which no host holds now.
		log.WithError(err).Warn("could not remove the cluster record")
	}
	return d.finish, nil
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

// RestoreFile gives back every entry of a state file kept aside (damaged,
// but still readable, or from another state directory), then renames it
// with journal.RestoredSuffix so prepares may go on.
func (r *Runner) RestoreFile(path string) error {
	if err := r.Store.Lock(); err != nil {
		return err
	}
	defer r.Store.Unlock()
	st, err := journal.LoadFile(path)
	var damage error
	if errors.Is(err, journal.ErrDamaged) {
		// Give back what the damaged copy still proves; name the rest.
		st, damage = journal.Salvage(path)
		if st == nil {
			return fmt.Errorf("%w; give back the owners it lists by hand and remove it", damage)
		}
	} else if err != nil {
		return fmt.Errorf("%w; if it cannot be read at all, give back the owners it lists by hand and remove it", err)
	}
	errs := []error{}
	if damage != nil {
		errs = append(errs, fmt.Errorf("%w: the entries it proves were given back; the rest need the administrator, and the file stays", damage))
	}
	sel := selection{op: "restore"}
	defer r.closeSpaces()
	all := st.All()
	r.openSpacesOf(all)
	for _, e := range all {
		if _, err := r.carryOutDecision(r.decide(e, st, false), sel); err != nil {
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
