package apply

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cluster"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// Files on filesystems shared between hosts are recorded twice: in this
// host's journal, like every file, and in their cluster record on the
// shared filesystem, which every host reads and writes under its lock.
// The journal says which domains of this host hold the file; the record
// says which hosts do, and the original owner. A live migration runs
// prepare on the destination while the source still runs the domain, then
// release on the source (libvirt before 10.5 does not say why): the
// destination finds the file owned by QEMU and takes the original from the
// record; the source's release sees the destination in the record and
// leaves the file with QEMU's owner; whichever host lets go last gives the
// original back and removes the record.

// Host is this host's id in cluster records.
func (r *Runner) Host() string {
	if r.HostID == "" {
		r.HostID = r.Store.HostID()
	}
	return r.HostID
}

// otherHosts are the mark's hosts that are not this machine (on any boot:
// this machine's earlier boots hold nothing any more).
func (r *Runner) otherHosts(m mark) []string {
	me := r.Host()
	var out []string
	for _, h := range m.Hosts {
		if id, _, _ := strings.Cut(h, "/"); id != me {
			out = append(out, h)
		}
	}
	return out
}

// space returns the locked record directory of the file at path on
// device dev, opening it on first use (see spaceDir).
func (r *Runner) space(path string, dev uint64) (*cluster.Space, error) {
	sp, err := r.spaceDir(r.Cluster.For(path, dev))
	switch {
	case errors.Is(err, cluster.ErrRootSquash):
		return nil, fmt.Errorf("cluster records of %s: %w; export the filesystem with no_root_squash to every hypervisor, or set cluster_dir to a directory on shared storage root can write from every host", path, err)
	case err != nil:
		return nil, fmt.Errorf("cluster records of %s: %w", path, err)
	}
	return sp, nil
}

// spaceDir returns the record directory dir, locked: opened on first use
// and kept until closeSpaces, because a process must not open one twice
// (see cluster.Space).
func (r *Runner) spaceDir(dir string) (*cluster.Space, error) {
	if sp := r.spaces[dir]; sp != nil {
		return sp, nil
	}
	sp, err := cluster.Open(dir, r.Store.LockTimeout)
	if err != nil {
		return nil, err
	}
	if r.spaces == nil {
		r.spaces = map[string]*cluster.Space{}
	}
	r.spaces[dir] = sp
	return sp, nil
}

// openSpaces locks the record directories of the given files (path to
// device) in one order, sorted, so two hosts locking several never
// deadlock.
func (r *Runner) openSpaces(files map[string]uint64) error {
	byDir := map[string]string{}
	for p, dev := range files {
		byDir[r.Cluster.For(p, dev)] = p
	}
	dirs := make([]string, 0, len(byDir))
	for d := range byDir {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	for _, d := range dirs {
		if _, err := r.space(byDir[d], files[byDir[d]]); err != nil {
			return err
		}
	}
	return nil
}

// openSpacesOf locks, in openSpaces' order, the record directories of the
// entries on shared filesystems, before any is decided: decided one by
// one they would be locked in the entries' order, and two hosts could each
// hold the directory the other waits for until the lock timeout. Only
// entries whose path names their inode now count, on the device it is on
// now (a decision of a gone file opens nothing; device numbers of network
// filesystems change across boots). A directory that cannot be locked
// here is tried again, and reported, by the decision that needs it.
func (r *Runner) openSpacesOf(entries []*journal.Entry) {
	shared := map[string]uint64{}
	for _, e := range entries {
		var st unix.Stat_t
		if e.Shared && unix.Stat(e.Path, &st) == nil && st.Ino == e.Ino {
			shared[e.Path] = uint64(st.Dev)
		}
	}
	_ = r.openSpaces(shared)
}

// closeSpaces lets go of every record directory this Runner locked.
func (r *Runner) closeSpaces() {
	for d, sp := range r.spaces {
		sp.Close()
		delete(r.spaces, d)
	}
}

// sharedFiles are the plan's files on shared filesystems, for openSpaces.
func (r *Runner) sharedFiles(p *plan.Plan) map[string]uint64 {
	out := map[string]uint64{}
	for _, s := range p.Steps {
		if holds(s) && r.isShared(s.Handle) {
			out[s.Path] = s.Handle.ID().Dev
		}
	}
	return out
}

// joinRecord works out, under the record directory's lock, the cluster
// record a prepare writes for a file of a shared filesystem, and the
// original owner the journal entry e must hold:
//   - another host holds the file as the owner this domain needs (a
//     migration's source, or a domain sharing a base image): the record's
//     original is the true one, though the file is QEMU's now;
//   - another host holds it as another owner, or someone changed its
//     owner under that host's QEMU: a conflict, as between two domains of
//     one host;
//   - nobody else holds it: a record left by a release that did not
//     finish still knows the original while the file is QEMU's or back
//     with that owner; a file with another owner now was given it by
//     someone else, whose owner is the original.
//
// Without a record, an owner mark of an earlier version naming another
// host is the source of the original instead.
func (r *Runner) joinRecord(s *plan.Step, e *journal.Entry, p *plan.Plan, boot string) (*recordChange, error) {
	id := s.Handle.ID()
	sp, err := r.space(s.Path, id.Dev)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", s.Path, s.From, err)
	}
	old, err := sp.Get(s.Path)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w; if no host uses the file, give it its owner and remove the record", s.Path, s.From, err)
	}
	me, cur, target := r.Host(), *s.Current, *s.Target
	firstHere := len(e.LiveHolders(boot)) <= 1
	var rec *cluster.Record
	switch {
	case old != nil && old.Ino == id.Ino:
		rec = old.Clone()
		// This host's earlier boots hold nothing any more.
		rec.Drop(func(h cluster.Holder) bool { return h.Host == me && h.Boot != boot })
		orig, held := owner.UIDGID{UID: rec.UID, GID: rec.GID}, owner.UIDGID{UID: rec.TargetUID, GID: rec.TargetGID}
		others := rec.Others(me)
		switch {
		case len(others) > 0 && held != target:
			return nil, fmt.Errorf("%s (%s): %w: host(s) %s hold it as %s, domain %s needs %s (for a host that is gone for good: `libvirt-dac-hook forget-host HOSTID`)",
				s.Path, s.From, ErrConflict, strings.Join(cluster.Hosts(others), ", "), held, p.Domain, target)
		case len(others) > 0 && cur != held && cur != orig && !(r.Cooperative && cur == rootOwner):
			// (libvirt "restores" to root:root what it remembers no owner
			// of, also under another host's QEMU: not a conflict, the
			// chown below gives the file back to QEMU.)
			return nil, fmt.Errorf("%s (%s): %w: host(s) %s hold it as %s, but it is owned by %s now: someone changed its owner under a running QEMU (for a host that is gone for good: `libvirt-dac-hook forget-host HOSTID`)",
				s.Path, s.From, ErrConflict, strings.Join(cluster.Hosts(others), ", "), held, cur)
		case (cur == held || cur == orig) && firstHere:
			e.UID, e.GID = rec.UID, rec.GID
		}
	default:
		if old != nil {
			r.Log.WithFields(logrus.Fields{"path": s.Path, "record": sp.Dir, "recorded_ino": old.Ino, "ino": id.Ino}).Warn("cluster record of a file since replaced: recorded afresh")
		}
		rec = &cluster.Record{Path: s.Path, Ino: id.Ino}
		if m, ok := readMark(s.Handle); ok && firstHere && cur == target && len(r.otherHosts(m)) > 0 {
			e.UID, e.GID = m.Owner.UID, m.Owner.GID
		}
	}
	rec.UID, rec.GID = e.UID, e.GID
	rec.TargetUID, rec.TargetGID = target.UID, target.GID
	rec.Add(cluster.Holder{Host: me, Boot: boot, Domain: p.Domain})
	return &recordChange{s: s, sp: sp, next: rec, old: old}, nil
}

// recordUpdate is what a release does to a file's cluster record: put
// next (Keep), or forget it once the file has its owner back.
type recordUpdate struct {
	sp   *cluster.Space
	next *cluster.Record
	// keep: the record stays (another host holds the file, or it
	// migrated); else it is forgotten once the file has its owner back.
	keep bool
}

// decideShared decides a release of a file of a shared filesystem that no
// domain of this host holds any more: this host lets go in the record; if
// another host still holds it, or libvirt says the domain migrated, the
// file keeps QEMU's owner. done is false when d is to be decided as on a local
// filesystem: with d.Original and d.To from the record, which every host
// agrees on, when there is one for this inode; else from the journal.
func (r *Runner) decideShared(d *Decision, e *journal.Entry, h *owner.Handle, migrated bool) (done bool) {
	cur := *d.Current
	sp, err := r.space(e.Path, h.ID().Dev)
	var rec *cluster.Record
	if err == nil {
		rec, err = sp.Get(e.Path)
	}
	if err != nil {
		d.Verdict, d.To, d.finish = Leave, cur, false
		d.Reason = "cluster record unreadable, kept for restore: " + err.Error()
		return true
	}
	if rec == nil || rec.Ino != h.ID().Ino {
		return r.decideMarked(d, h, migrated)
	}
	next := rec.Clone()
	me := r.Host()
	next.Drop(func(hd cluster.Holder) bool { return hd.Host == me })
	d.record = &recordUpdate{sp: sp, next: next, keep: true}
	d.Original = owner.UIDGID{UID: rec.UID, GID: rec.GID}
	d.To = d.Original
	target := owner.UIDGID{UID: rec.TargetUID, GID: rec.TargetGID}
	switch {
	case len(next.Holders) > 0 && r.Cooperative && cur != target && (cur == rootOwner || cur == d.Original):
		// libvirt took the file back from QEMU (it does not know the
		// storage is shared, or thought the migration failed), under
		// another host's running QEMU: QEMU gets it again.
		d.Verdict, d.To = GiveBack, target
		d.Reason = "libvirt gave it " + cur.String() + " while host(s) " + strings.Join(cluster.Hosts(next.Holders), ", ") + " still run QEMU on it: given back to QEMU"
		return true
	case len(next.Holders) > 0:
		d.Verdict, d.To = Keep, cur
		d.Reason = "still used by host(s) " + strings.Join(cluster.Hosts(next.Holders), ", ") + ": left with QEMU's owner for the last of them to give back"
		return true
	case migrated:
		// The destination has not joined the record (it may not run the
		// hook): the record stays, holding the original for it.
		d.Verdict, d.To = Keep, cur
		d.Reason = "migrated: left with QEMU's owner on the shared filesystem"
		return true
	}
	// A host of an earlier version may hold it too, saying so only in
	// its owner mark.
	done = r.decideMarked(d, h, false)
	d.record.keep = done
	return done
}

// decideMarked is decideShared for a file with no cluster record, which
// an earlier version may have marked (OwnerXattr).
func (r *Runner) decideMarked(d *Decision, h *owner.Handle, migrated bool) (done bool) {
	m, ok := readMark(h)
	others := r.otherHosts(m)
	if migrated || (ok && len(others) > 0) {
		d.Verdict, d.To = Keep, *d.Current
		if migrated {
			d.Reason = "migrated: left with QEMU's owner on the shared filesystem"
		} else {
			d.Reason = "still used by host(s) " + strings.Join(others, ",") + " (owner mark of an earlier version): left with QEMU's owner for that host to give back"
		}
		return true
	}
	d.unmark = true
	return false
}

// writeRecord carries out a release's record update around the verdict:
// a kept file's record loses this host; a file given back is first
// recorded as held by nobody (so a crash before the chown leaves the
// original where the next prepare or restore finds it), then forgotten.
func (d *Decision) writeRecord(before bool) error {
	u := d.record
	switch {
	case u == nil:
		return nil
	case before && (u.keep || d.Verdict == GiveBack):
		return u.sp.Put(u.next)
	case before || u.keep:
		return nil
	}
	return u.sp.Remove(u.next.Path)
}

// ReleaseHolders lets go, in the record directories dirs, of the holders
// match picks, and gives back every file that no host holds afterwards,
// as its last release would have. `forget-host` picks a host that is gone
// for good; `boot` this host's earlier boots. Records it cannot read are
// reported and do not stop the others.
func (r *Runner) ReleaseHolders(dirs []string, match func(cluster.Holder) bool, op string) error {
	if err := r.Store.Lock(); err != nil {
		return err
	}
	defer r.Store.Unlock()
	defer r.closeSpaces()
	dirs = slices.Clone(dirs)
	slices.Sort(dirs)
	var errs []error
	for _, dir := range dirs {
		sp, err := r.spaceDir(dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster records in %s: %w", dir, err))
			continue
		}
		recs, lerrs := sp.List()
		errs = append(errs, lerrs...)
		for _, rec := range recs {
			if err := r.releaseRecord(sp, rec, match, op); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) releaseRecord(sp *cluster.Space, rec *cluster.Record, match func(cluster.Holder) bool, op string) error {
	next := rec.Clone()
	dropped := next.Drop(match)
	if !dropped && len(rec.Holders) > 0 {
		return nil
	}
	log := r.Log.WithFields(logrus.Fields{"op": op, "path": rec.Path})
	if dropped {
		if err := sp.Put(next); err != nil {
			return err
		}
	}
	if len(next.Holders) > 0 {
		log.WithField("holders", len(next.Holders)).Info("still used by host(s) " + strings.Join(cluster.Hosts(next.Holders), ", ") + ": left with QEMU's owner")
		return nil
	}
	h, err := owner.Open(rec.Path)
	if err == nil && h.ID().Ino != rec.Ino {
		err = fmt.Errorf("its path names another file (inode %d, recorded %d)", h.ID().Ino, rec.Ino)
	}
	if err != nil {
		h.Close()
		log.WithError(err).Warn("the recorded file is gone: record removed, nothing to give back")
		return sp.Remove(rec.Path)
	}
	id := h.ID()
	h.Close()
	e := &journal.Entry{Path: rec.Path, Dev: id.Dev, Ino: id.Ino, UID: rec.UID, GID: rec.GID,
		TargetUID: rec.TargetUID, TargetGID: rec.TargetGID, Shared: true}
	_, err = r.carryOutDecision(r.decide(e, nil, false), selection{op: op})
	return err
}

// Records lists the cluster records of the directories dirs, by
// directory, with the records that could not be read as errors.
func Records(dirs []string, timeout time.Duration) (map[string][]*cluster.Record, []error) {
	out := map[string][]*cluster.Record{}
	var errs []error
	for _, dir := range dirs {
		sp, err := cluster.Open(dir, timeout)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster records in %s: %w", dir, err))
			continue
		}
		recs, lerrs := sp.List()
		sp.Close()
		out[dir] = recs
		errs = append(errs, lerrs...)
	}
	return out, errs
}
