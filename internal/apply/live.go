package apply

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/qemuproc"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// KindLive marks, in decisions, a file of a domain's inventory: labelled
// by libvirt during the run, not recorded by prepare.
const KindLive = "live"

// DefaultLiveDirs are recorded for every domain in cooperative mode
// besides the directories of its own images: libvirt's default image
// directories, and /dev for block devices and device nodes hot-plugged
// later.
var DefaultLiveDirs = []string{"/var/lib/libvirt/images", "/var/lib/libvirt/boot", "/dev"}

// RecordLive writes, after Prepare carried out p in cooperative mode, the
// domain's inventory record: the directories the watcher follows for it
// (those of its files and LiveDirs, so that files libvirt labels during
// the run get their owners back), who its QEMU runs as, and the files
// prepare gave it (the journal's, not libvirt's labels). It returns the
// record's generation, which the watcher's handshake names; 0 and no
// record when the plan gives QEMU nothing (it runs as root).
func (r *Runner) RecordLive(p *plan.Plan) (int64, error) {
	if p.Target == nil {
		return 0, nil
	}
	rec := inventory.New(p.Domain, r.Store.BootID, p.Target.UID, p.Target.GID, r.liveDirs(p))
	rec.Gen = time.Now().UnixNano()
	for _, st := range p.Steps {
		if st.Handle != nil && (st.Action == plan.Chown || st.Action == plan.Keep) && len(rec.Held) < inventory.MaxFiles {
			rec.Held = append(rec.Held, st.Handle.Path)
		}
	}
	if err := inventory.Save(r.Store.Dir, rec); err != nil {
		return 0, err
	}
	return rec.Gen, nil
}

// liveDirs are the directories whose files a domain's live operations are
// likely to bring in: those of its regular files, plus LiveDirs.
func (r *Runner) liveDirs(p *plan.Plan) []string {
	extra := r.LiveDirs
	if extra == nil {
		extra = DefaultLiveDirs
	}
	dirs := make([]string, 0, len(extra)+len(p.Steps))
	for _, d := range extra {
		// A symlinked directory (/var/lib/libvirt/images -> /srv/images) is
		// recorded, and so watched, where it leads.
		if target, err := filepath.EvalSymlinks(d); err == nil {
			d = target
		}
		dirs = append(dirs, d)
	}
	for _, st := range p.Steps {
		if st.Path == "" || domain.Kind(st.Kind).Types()&domain.TypeRegular == 0 {
			continue
		}
		dirs = append(dirs, filepath.Dir(st.Path))
	}
	return dirs
}

// ReleaseLive is release's part in cooperative mode: it reads the
// domain's inventory record, calls sync with its generation (the
// watcher's handshake, so that what it saw is written down), gives back
// what libvirt labelled during the run (ReleaseInventory), and removes the
// record once nothing is left for later. No record, or one that cannot be
// read (logged), gives nothing back.
func (r *Runner) ReleaseLive(name string, sync func(gen int64)) error {
	rec, err := inventory.Load(r.Store.Dir, name)
	if err != nil {
		r.Log.WithField("domain", name).WithError(err).Warn("inventory unreadable: files libvirt labelled during the run keep the owner libvirt left")
	}
	if rec == nil {
		return nil
	}
	sync(rec.Gen)
	forget := func() error { return inventory.Remove(r.Store.Dir, name) }
	return r.ReleaseInventory(rec, "release", forget)
}

// JournalKnows answers the watcher from a read-only view of the journal:
// the hook's own chowns (journal first, then chown) are not libvirt's.
// A journal that cannot be read answers nothing (nil): release asks it
// again.
func JournalKnows(st *journal.Store) func([]inventory.File) []bool {
	return func(fs []inventory.File) []bool {
		out := make([]bool, len(fs))
		view, err := st.Load()
		if err != nil {
			return nil
		}
		for i, f := range fs {
			out[i] = view.Lookup(journal.Key(f.ID.Inode())) != nil
		}
		return out
	}
}

// ReleaseInventory gives back, after libvirt's restore, the files of a
// domain's directories that libvirt labelled during the run and left owned
// by QEMU or "restored" to root:root: what the watcher saw them owned by
// just before is the record that vouches for their owner. See
// decideInventory for when a file is given back; every other file is left
// as it is.
//
// forget, when set, is called under the journal's lock once every file is
// dealt with (to remove the record).
func (r *Runner) ReleaseInventory(rec *inventory.Record, op string, forget func() error) error {
	if rec == nil {
		return nil
	}
	if err := r.Store.Lock(); err != nil {
		return err
	}
	defer r.Store.Unlock()
	// What libvirt labelled during the run, seen by the watcher.
	obs, err := inventory.LoadLabelled(r.Store.Dir)
	if err != nil {
		r.Log.WithError(err).Warn("files labelled during the run unknown: they keep the owner libvirt left")
	}
	st, err := r.Store.Load()
	if err != nil {
		return err
	}
	ds, err := r.decideInventory(rec, obs, st)
	if err != nil {
		return err
	}
	var errs []error
	sel := selection{domain: rec.Domain, op: op}
	for _, d := range ds {
		if d.Verdict == GiveBack {
			if err := r.step(); err != nil {
				closeAll(ds)
				return err
			}
		}
		if _, err := r.carryOutDecision(d, sel); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && forget != nil && !anyKept(ds) {
		return forget()
	}
	return errors.Join(errs...)
}

// PlanInventory shows what ReleaseInventory would decide, changing nothing.
func (r *Runner) PlanInventory(rec *inventory.Record, st *journal.State) ([]Decision, error) {
	if rec == nil {
		return nil, nil
	}
	obs, err := inventory.LoadLabelled(r.Store.Dir)
	if err != nil {
		return nil, err
	}
	ds, err := r.decideInventory(rec, obs, st)
	closeAll(ds)
	return ds, err
}

func closeAll(ds []Decision) {
	for _, d := range ds {
		if d.handle != nil {
			d.handle.Close()
		}
	}
}

// decideInventory decides for every file of rec that libvirt may have
// labelled. A file gets its recorded owner back only when libvirt was
// shown to have made the change (see package watch), it is provably the
// inode recorded (file handle, generation, birth), the journal has no
// record of it (the journal's rules decide those), its owner is now the
// domain's QEMU owner, QEMU's user with another group, or root:root, and
// no QEMU of libvirt's holds it open. Files with their recorded owner, or gone, are not listed;
// GiveBack decisions carry an open handle.
func (r *Runner) decideInventory(rec *inventory.Record, obs *inventory.Labelled, st *journal.State) ([]Decision, error) {
	qemu := owner.UIDGID{UID: rec.QEMUUID, GID: rec.QEMUGID}
	var out []Decision
	for _, f := range obs.In(rec) {
		orig := owner.UIDGID{UID: f.UID, GID: f.GID}
		h, err := owner.OpenByIdentity(f.ID, f.Path)
		if err != nil {
			continue // not provably the file recorded: changed nowhere
		}
		id := h.ID()
		uid, gid := h.Owner()
		cur := owner.UIDGID{UID: uid, GID: gid}
		d := Decision{Path: h.Path, Kind: KindLive, Current: &cur, Original: orig, To: orig, handle: h}
		switch {
		case st.Lookup(journal.Key(id)) != nil, cur == orig:
			h.Close()
			continue
		case !f.Proven:
			d.Verdict, d.To = Leave, cur
			d.Reason = fmt.Sprintf("became QEMU's during the run, but the change was not shown to be libvirt's (%s): left as it is (recorded before %s)", f.By, orig)
			h.Close()
			d.handle = nil
		case r.isShared(h):
			// Another host's QEMU may use it now (a migration): this
			// host cannot see that, so it is left for reclaim.
			d.Verdict, d.To, d.Reason = Keep, cur, "on a filesystem shared between hosts: left with its owner (another host may use it)"
		case cur == qemu:
			d.Verdict, d.Reason = GiveBack, "libvirt labelled it during the run and left it to QEMU"
		case cur == rootOwner && orig != rootOwner:
			d.Verdict, d.Reason = GiveBack, "libvirt labelled it during the run and restored it to root:root"
		case cur.UID == qemu.UID:
			// QEMU's user gave it one of its own groups: still its.
			d.Verdict, d.Reason = GiveBack, fmt.Sprintf("libvirt labelled it during the run; still QEMU's user's, with group %d", cur.GID)
		default:
			d.Verdict, d.To = Leave, cur
			d.Reason = fmt.Sprintf("owner changed since prepare by someone else (recorded %s): left alone", orig)
			h.Close()
			d.handle = nil
		}
		out = append(out, d)
	}
	if !hasGiveBack(out) {
		return out, nil
	}
	inUse, err := qemuproc.OpenFiles(qemuproc.RunDir, qemuproc.ProcRoot, rec.QEMUUID)
	if err != nil {
		closeAll(out)
		return nil, fmt.Errorf("list files open by QEMU: %w", err)
	}
	for i := range out {
		d := &out[i]
		if d.Verdict != GiveBack {
			continue
		}
		if p, ok := inUse[d.handle.ID()]; ok {
			d.Verdict, d.To = Keep, *d.Current
			d.Reason = fmt.Sprintf("still open by a running QEMU (pid %d): left with its owner", p.PID)
		}
	}
	return out, nil
}

// anyKept reports whether a decision left a file for later: then the
// record stays, for a later restore to finish with.
func anyKept(ds []Decision) bool {
	for _, d := range ds {
		if d.Verdict == Keep {
			return true
		}
	}
	return false
}

func hasGiveBack(ds []Decision) bool {
	for _, d := range ds {
		if d.Verdict == GiveBack {
			return true
		}
	}
	return false
}
