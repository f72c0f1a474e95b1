package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/remembered"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/reclaim"
)

// reclaimSummary is the message of the line `reclaim` logs at the end.
const reclaimSummary = "reclaim: gave back files left with QEMU's user"

// procRoot is where reclaim reads running processes; tests point it at a
// tree of their own.
var procRoot = "/proc"

type reclaimReport struct {
	QEMU     string            `json:"qemu_user"`
	Roots    []string          `json:"roots"`
	Notes    []string          `json:"notes"`
	Files    []reclaim.Verdict `json:"files"`
	DryRun   bool              `json:"dry_run"`
	GaveBack int               `json:"gave_back"`
	Failed   int               `json:"failed"`
}

func cmdReclaim(e *env, args []string) error {
	fs := newFlags(e, "reclaim", "reclaim [--dry-run] [--json] [--owner USER:GROUP] [PATH...]\n\n"+
		"Finds files (regular files, block devices) owned by QEMU's user that no running domain uses,\n"+
		"left by libvirt's own DAC driver, and gives each back to the owner libvirt remembered\n"+
		"(trusted.libvirt.security.dac), else to root:root (its directory's owner is only a guess), or to --owner.\n"+
		"Default PATHs: the targets of libvirt's directory storage pools and "+reclaim.DefaultImages+".\n"+
		"Symlinks are not followed, other filesystems and hidden entries below a PATH are not entered.")
	dry := fs.Bool("dry-run", false, "only show what would be given back, and why")
	asJSON := fs.Bool("json", false, "print JSON")
	force := fs.String("owner", "", "give every file found to USER:GROUP (names or +N ids) instead")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var to *owner.UIDGID
	if *force != "" {
		id, err := config.ParseLabel(*force)
		if err != nil {
			return withCode(ExitUsage, fmt.Errorf("--owner: %w", err))
		}
		to = &owner.UIDGID{UID: id.UID, GID: id.GID}
	}
	s, err := loadSetup(e, false)
	if err != nil {
		return err
	}
	defer s.Close()
	id, err := s.identity()
	if err != nil {
		return err
	}
	rep := reclaimReport{QEMU: id.String(), DryRun: *dry, Notes: []string{}, Files: []reclaim.Verdict{}}
	if fs.NArg() > 0 {
		for _, p := range fs.Args() {
			if !filepath.IsAbs(p) {
				return withCode(ExitUsage, fmt.Errorf("%s: give absolute paths", p))
			}
			rep.Roots = append(rep.Roots, filepath.Clean(p))
		}
	} else {
		rep.Roots, rep.Notes, err = reclaim.DefaultRoots(s.hook.StoragePoolDir)
		if err != nil {
			return err
		}
	}
	files, notes, err := reclaim.Scan(rep.Roots, id.UID)
	if err != nil {
		return withCode(ExitInput, err)
	}
	rep.Notes = append(rep.Notes, notes...)
	opts, err := reclaimOptions(s, id, to, nil)
	if err != nil {
		return err
	}
	for _, f := range files {
		rep.Files = append(rep.Files, reclaim.Decide(f, opts))
	}
	var gerr error
	if !*dry {
		gerr = giveBackReclaimed(s, id, to, &rep)
	}
	if *asJSON {
		if err := writeJSON(e.stdout, rep); err != nil {
			return err
		}
	} else if err := printReclaim(e, &rep); err != nil {
		return err
	}
	return gerr
}

// reclaimOptions gathers what Decide judges against: QEMU's user, the
// protected paths, and every inode a running domain uses (the journal's,
// read from st or, when st is nil, from the state file without locking,
// and QEMU processes' open files).
func reclaimOptions(s *setup, id config.Identity, to *owner.UIDGID, st *journal.State) (reclaim.Options, error) {
	if st == nil {
		var err error
		st, err = journal.LoadFile(filepath.Join(s.hook.StateDir, "state.json"))
		if errors.Is(err, fs.ErrNotExist) {
			st, err = &journal.State{Version: journal.FormatVersion}, nil
		}
		if err != nil {
			return reclaim.Options{}, withCode(ExitState, err)
		}
	}
	used := reclaim.NewInUse()
	used.AddJournal(st)
	if err := used.AddProcesses(libvirtRunDir, procRoot, id.UID); err != nil {
		return reclaim.Options{}, err
	}
	pol := s.planEnv(false).Policy
	recorded := clusterOriginals(s, used)
	return reclaim.Options{
		Recorded: recorded,
		QEMU:     owner.UIDGID{UID: id.UID, GID: id.GID},
		Force:    to,
		InUse:    used,
		Protected: func(p string) bool {
			h, err := owner.Open(p)
			if err != nil {
				return true // what cannot be opened safely is not reclaimed
			}
			defer h.Close()
			return pol.Protects(h)
		},
		AllowHardlinks: s.hook.AllowHardlinks,
	}, nil
}

// giveBackReclaimed gives back every file judged so, write-ahead like a
// release: under the state lock, each file is judged again on a handle
// (a domain may have started since the scan), recorded durably as a
// pending entry (no holders: a crash from here on leaves it for `restore
// --stale` or the boot unit to finish), chowned through the handle, and
// forgotten.
func giveBackReclaimed(s *setup, id config.Identity, to *owner.UIDGID, rep *reclaimReport) error {
	give := 0
	for _, v := range rep.Files {
		if v.Action == reclaim.GiveBack {
			give++
		}
	}
	if give == 0 {
		return nil
	}
	store, err := journal.Open(s.hook.StateDir, s.hook.LockTimeout)
	if err != nil {
		return withCode(ExitState, err)
	}
	if err := store.Lock(); err != nil {
		return withCode(ExitState, err)
	}
	defer store.Unlock()
	st, err := store.Load()
	if err != nil {
		return withCode(ExitState, err)
	}
	opts, err := reclaimOptions(s, id, to, st)
	if err != nil {
		return err
	}
	pol := s.planEnv(false).Policy
	type change struct {
		i int
		h *owner.Handle
		e *journal.Entry
	}
	var changes []change
	defer func() {
		for _, c := range changes {
			_ = c.h.Close()
		}
	}()
	for i := range rep.Files {
		v := &rep.Files[i]
		if v.Action != reclaim.GiveBack {
			continue
		}
		h, err := owner.Open(v.Path)
		if err == nil {
			var f reclaim.File
			f, err = reclaim.Inspect(h)
			if err == nil && (f.Dev != v.Dev || f.Ino != v.Ino) {
				err = errors.New("replaced since the scan")
			}
			if err == nil {
				*v = reclaim.Decide(f, opts)
				if v.Action == reclaim.GiveBack {
					err = pol.Check(h, owner.Want{Types: domain.TypeRegular | domain.TypeBlock})
				}
			}
		}
		if err != nil {
			v.Action, v.To, v.Reason = reclaim.Skip, nil, domain.OneLine(err.Error())
		}
		if v.Action != reclaim.GiveBack {
			if h != nil {
				_ = h.Close()
			}
			continue
		}
		en := &journal.Entry{Path: v.Path, Dev: v.Dev, Ino: v.Ino, UID: v.To.UID, GID: v.To.GID,
			TargetUID: v.Owner.UID, TargetGID: v.Owner.GID, Holders: []journal.Holder{}, Created: store.BootID}
		if st.Lookup(en.Key()) != nil {
			_ = h.Close()
			v.Action, v.To, v.Reason = reclaim.Skip, nil, "recorded in the hook's journal"
			continue
		}
		st.Add(en)
		changes = append(changes, change{i, h, en})
	}
	if len(changes) == 0 {
		return nil
	}
	if err := store.Save(st); err != nil {
		return withCode(ExitState, err)
	}
	var errs []error
	for _, c := range changes {
		v := &rep.Files[c.i]
		log := s.log.WithFields(logrus.Fields{"op": "reclaim", "path": v.Path, "from": v.Owner.String(), "to": v.To.String(), "reason": v.Reason})
		if err := c.h.Chown(v.To.UID, v.To.GID); err != nil {
			// Nothing changed: forget the record rather than leave a
			// give-back every later restore retries.
			log.WithError(err).Error("reclaim failed")
			errs = append(errs, err)
			rep.Failed++
			st.Remove(c.e.Key())
			continue
		}
		log.Info("chown")
		rep.GaveBack++
		if v.ClearLabel {
			for _, x := range remembered.Xattrs {
				if err := c.h.RemoveXattr(x); err != nil {
					log.WithError(err).Warn("could not remove libvirt's remembered owner")
				}
			}
		}
		st.Remove(c.e.Key())
	}
	if err := store.Save(st); err != nil {
		errs = append(errs, err)
	}
	s.log.WithFields(logrus.Fields{"op": "reclaim", "gave_back": rep.GaveBack, "failed": rep.Failed}).Info(reclaimSummary)
	return errors.Join(errs...)
}

func printReclaim(e *env, rep *reclaimReport) error {
	w := e.stdout
	verb := "gives back"
	if rep.DryRun {
		verb = "would give back"
	}
	if _, err := fmt.Fprintf(w, "reclaim: files owned by QEMU's user %s under %s\n", rep.QEMU, strings.Join(rep.Roots, ", ")); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, "ACTION\tKIND\tCURRENT\tTO\tPATH\tREASON"); err != nil {
		return err
	}
	give := 0
	for _, v := range rep.Files {
		to := "-"
		if v.To != nil {
			to = v.To.String()
			give++
		}
		if _, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Action, v.Kind, v.Owner, to, v.Path, v.Reason); err != nil {
			return err
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range rep.Notes {
		if _, err := fmt.Fprintf(w, "note: %s\n", n); err != nil {
			return err
		}
	}
	var err error
	switch {
	case rep.DryRun:
		_, err = fmt.Fprintf(w, "%d file(s) found, reclaim %s %d (run without --dry-run to do it)\n", len(rep.Files), verb, give)
	default:
		_, err = fmt.Fprintf(w, "%d file(s) found, gave back %d, %d failed\n", len(rep.Files), rep.GaveBack, rep.Failed)
	}
	return err
}

// clusterOriginals reads the cluster records of shared filesystems: a file
// another host (or this one) holds is in use; every recorded file's
// original owner is the one to give back.
func clusterOriginals(s *setup, used *reclaim.InUse) func(reclaim.File) (owner.UIDGID, string, bool) {
	recs, _ := apply.Records(clusterRecordDirs(s), s.hook.LockTimeout)
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
	return func(f reclaim.File) (owner.UIDGID, string, bool) {
		o, ok := byPath[f.Path]
		if !ok || o.ino != f.Ino {
			return owner.UIDGID{}, "", false
		}
		return o.owner, o.dir, true
	}
}
