package reclaim

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/qemuproc"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/remembered"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// Summary is the message of the line GiveBack logs at the end.
const Summary = "reclaim: gave back files left with QEMU's user"

// Env is the host a reclaim judges files on and gives them back in.
type Env struct {
	// StateDir and LockTimeout are the hook's journal.
	StateDir    string
	LockTimeout time.Duration
	// QEMU is the user and group QEMU runs as; Force, when set, the
	// owner every file gets instead of the one judged (--owner).
	QEMU  owner.UIDGID
	Force *owner.UIDGID
	// Policy is the one every chown of the hook passes.
	Policy         owner.Policy
	AllowHardlinks bool
	// ClusterDirs are the record directories of shared filesystems this
	// host sees: a file they record is judged by them.
	ClusterDirs []string
	Log         logrus.FieldLogger
}

// Report is what a reclaim found, decided and did.
type Report struct {
	QEMU     string    `json:"qemu_user"`
	Roots    []string  `json:"roots"`
	Notes    []string  `json:"notes"`
	Files    []Verdict `json:"files"`
	DryRun   bool      `json:"dry_run"`
	GaveBack int       `json:"gave_back"`
	Failed   int       `json:"failed"`
}

// Judge decides every file found against what the host uses now: the
// journal's records (read without the lock), QEMU processes' open files
// and the cluster records.
func (env Env) Judge(rep *Report, files []File) error {
	opts, err := env.options(nil)
	if err != nil {
		return err
	}
	for _, f := range files {
		rep.Files = append(rep.Files, Decide(f, opts))
	}
	return nil
}

// options gathers what Decide judges against: QEMU's user, the protected
// paths, and every inode a running domain uses (the journal's, read from
// st or, when st is nil, from the state file without locking, and QEMU
// processes' open files).
func (env Env) options(st *journal.State) (Options, error) {
	if st == nil {
		var err error
		st, err = journal.LoadFile(filepath.Join(env.StateDir, "state.json"))
		if errors.Is(err, fs.ErrNotExist) {
			st, err = &journal.State{Version: journal.FormatVersion}, nil
		}
		if err != nil {
			return Options{}, journal.Unusable(err)
		}
	}
	used := NewInUse()
	used.AddJournal(st)
	if err := used.AddProcesses(qemuproc.RunDir, qemuproc.ProcRoot, env.QEMU.UID); err != nil {
		return Options{}, err
	}
	return Options{
		Recorded: env.clusterOriginals(used),
		QEMU:     env.QEMU,
		Force:    env.Force,
		InUse:    used,
		Protected: func(p string) bool {
			h, err := owner.Open(p)
			if err != nil {
				return true // what cannot be opened safely is not reclaimed
			}
			defer h.Close()
			return env.Policy.Protects(h)
		},
		AllowHardlinks: env.AllowHardlinks,
	}, nil
}

// clusterOriginals reads the cluster records of shared filesystems: a file
// another host (or this one) holds is in use; every recorded file's
// original owner is the one to give back.
func (env Env) clusterOriginals(used *InUse) func(File) (owner.UIDGID, string, bool) {
	recs, _ := apply.Records(env.ClusterDirs, env.LockTimeout)
	type orig struct {
		ino   uint64
		owner owner.UIDGID
		dir   string
	}
	byPath := map[string]orig{}
	for dir, rs := range recs {
		for _, r := range rs {
			if len(r.Holders) > 0 {
				var hs []string
				for _, h := range r.Holders {
					hs = append(hs, h.String())
				}
				used.AddPath(r.Path, "held by "+strings.Join(hs, ", ")+" (cluster record in "+dir+")")
			}
			byPath[r.Path] = orig{r.Ino, owner.UIDGID{UID: r.UID, GID: r.GID}, dir}
		}
	}
	return func(f File) (owner.UIDGID, string, bool) {
		o, ok := byPath[f.Path]
		if !ok || o.ino != f.Ino {
			return owner.UIDGID{}, "", false
		}
		return o.owner, o.dir, true
	}
}

// pending is a file about to be given back: its handle and the journal
// entry recorded for it.
type pending struct {
	v *Verdict
	h *owner.Handle
	e *journal.Entry
}

// GiveBack gives back every file rep judged so, write-ahead like a
// release: under the journal's lock each file is judged again on a handle
// (a domain may have started since the scan), recorded durably as a
// pending entry (no holders: a crash from here on leaves it for `restore
// --stale` or the boot unit to finish), chowned through the handle, and
// forgotten. Files it skips after all get Skip and the reason in rep.
func (env Env) GiveBack(rep *Report) error {
	give := 0
	for _, v := range rep.Files {
		if v.Action == GiveBack {
			give++
		}
	}
	if give == 0 {
		return nil
	}
	store, err := journal.Open(env.StateDir, env.LockTimeout)
	if err != nil {
		return journal.Unusable(err)
	}
	if err := store.Lock(); err != nil {
		return journal.Unusable(err)
	}
	defer store.Unlock()
	st, err := store.Load()
	if err != nil {
		return journal.Unusable(err)
	}
	opts, err := env.options(st)
	if err != nil {
		return err
	}
	var todo []pending
	defer func() {
		for _, p := range todo {
			_ = p.h.Close()
		}
	}()
	for i := range rep.Files {
		if p, ok := env.recheck(&rep.Files[i], opts, st, store.BootID); ok {
			st.Add(p.e)
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := store.Save(st); err != nil {
		return journal.Unusable(err)
	}
	var errs []error
	for _, p := range todo {
		if err := env.chown(p, rep); err != nil {
			errs = append(errs, err)
		}
		st.Remove(p.e.Key())
	}
	if err := store.Save(st); err != nil {
		errs = append(errs, err)
	}
	env.Log.WithFields(logrus.Fields{"op": "reclaim", "gave_back": rep.GaveBack, "failed": rep.Failed}).Info(Summary)
	return errors.Join(errs...)
}

// recheck judges a file given back again, on a handle, under the lock,
// and returns the entry that records its give-back; ok is false (and v
// says why) when it is to be left alone after all.
func (env Env) recheck(v *Verdict, opts Options, st *journal.State, boot string) (p pending, ok bool) {
	if v.Action != GiveBack {
		return pending{}, false
	}
	h, err := owner.Open(v.Path)
	if err == nil {
		var f File
		f, err = Inspect(h)
		if err == nil && (f.Dev != v.Dev || f.Ino != v.Ino) {
			err = errors.New("replaced since the scan")
		}
		if err == nil {
			*v = Decide(f, opts)
			if v.Action == GiveBack {
				err = env.Policy.Check(h, owner.Want{Types: domain.TypeRegular | domain.TypeBlock})
			}
		}
	}
	if err != nil {
		v.Action, v.To, v.Reason = Skip, nil, domain.OneLine(err.Error())
	}
	if v.Action != GiveBack {
		if h != nil {
			_ = h.Close()
		}
		return pending{}, false
	}
	e := &journal.Entry{Path: v.Path, Dev: v.Dev, Ino: v.Ino, UID: v.To.UID, GID: v.To.GID,
		TargetUID: v.Owner.UID, TargetGID: v.Owner.GID, Holders: []journal.Holder{}, Created: boot}
	if st.Lookup(e.Key()) != nil {
		_ = h.Close()
		v.Action, v.To, v.Reason = Skip, nil, "recorded in the hook's journal"
		return pending{}, false
	}
	return pending{v: v, h: h, e: e}, true
}

// chown gives one recorded file back and, when libvirt's remembered
// owner was what vouched for it, removes libvirt's xattrs as libvirt's
// own restore would.
func (env Env) chown(p pending, rep *Report) error {
	v := p.v
	log := env.Log.WithFields(logrus.Fields{"op": "reclaim", "path": v.Path, "from": v.Owner.String(), "to": v.To.String(), "reason": v.Reason})
	if err := p.h.Chown(v.To.UID, v.To.GID); err != nil {
		// Nothing changed: the caller forgets the record rather than
		// leave a give-back every later restore retries.
		log.WithError(err).Error("reclaim failed")
		rep.Failed++
		return err
	}
	log.Info("chown")
	rep.GaveBack++
	if v.ClearLabel {
		for _, x := range remembered.Xattrs {
			if err := p.h.RemoveXattr(x); err != nil {
				log.WithError(err).Warn("could not remove libvirt's remembered owner")
			}
		}
	}
	return nil
}
