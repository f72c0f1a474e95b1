package apply

import (
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/qemuproc"
)

// ProcRoot is where QEMU processes are looked for; tests may change it.
var ProcRoot = "/proc"

// liveCandidate is a file of an inventory that libvirt left with the
// wrong owner.
type liveCandidate struct {
	f      inventory.File
	h      *owner.Handle
	cur    plan.Owner
	reason string
}

// ReleaseInventory gives back, after libvirt's restore, the files of a
// domain's image directories that libvirt labelled during the run and
// left owned by QEMU or "restored" to root:root: the inventory taken at
// prepare is the record that vouches for their owner. A file is given
// back only when it is the inode recorded, the journal holds no record of
// it (the journal's rules decide those), its owner is now the domain's
// QEMU owner or root:root, and no running QEMU holds it open. Every other
// file is left as it is.
func (r *Runner) ReleaseInventory(rec *inventory.Record, op string) error {
	if rec == nil || len(rec.Files) == 0 {
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
	log := r.Log.WithFields(logrus.Fields{"domain": rec.Domain, "op": op})
	cands := r.liveCandidates(rec, st, log)
	if len(cands) == 0 {
		return nil
	}
	defer func() {
		for _, c := range cands {
			c.h.Close()
		}
	}()
	inUse, err := qemuproc.OpenFiles(ProcRoot)
	if err != nil {
		return fmt.Errorf("list files open by QEMU: %w", err)
	}
	var errs []error
	for _, c := range cands {
		id := c.h.ID()
		if pid, ok := inUse[qemuproc.ID{Dev: id.Dev, Ino: id.Ino}]; ok {
			log.WithFields(logrus.Fields{"path": c.h.Path, "pid": pid}).Info("still open by a running QEMU: left with its owner")
			continue
		}
		if err := r.step(); err != nil {
			return err
		}
		if err := c.h.Chown(c.f.UID, c.f.GID); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", c.h.Path, err))
			continue
		}
		log.WithFields(logrus.Fields{"path": c.h.Path, "from": c.cur.String(), "to": plan.Owner{UID: c.f.UID, GID: c.f.GID}.String(), "reason": c.reason}).Info("chown")
	}
	return errors.Join(errs...)
}

func (r *Runner) liveCandidates(rec *inventory.Record, st *journal.State, log logrus.FieldLogger) []liveCandidate {
	qemu := plan.Owner{UID: rec.QEMUUID, GID: rec.QEMUGID}
	var out []liveCandidate
	for _, f := range rec.Files {
		orig := plan.Owner{UID: f.UID, GID: f.GID}
		h, err := owner.Open(f.Path())
		if err != nil {
			continue
		}
		id := h.ID()
		uid, gid := h.Owner()
		cur := plan.Owner{UID: uid, GID: gid}
		var reason string
		switch {
		case id.Dev != f.Dev || id.Ino != f.Ino || !owner.SameBirth(f.Birth, h):
		case st.Lookup((&journal.Entry{Dev: id.Dev, Ino: id.Ino}).Key()) != nil:
		case cur == orig:
		case cur == qemu:
			reason = "libvirt labelled it during the run and left it to QEMU"
		case cur == rootOwner && orig != rootOwner:
			reason = "libvirt labelled it during the run and restored it to root:root"
		default:
			log.WithFields(logrus.Fields{"path": h.Path, "found": cur.String(), "recorded": orig.String()}).Debug("owner changed since prepare by someone else: left alone")
		}
		if reason == "" {
			h.Close()
			continue
		}
		out = append(out, liveCandidate{f: f, h: h, cur: cur, reason: reason})
	}
	return out
}
