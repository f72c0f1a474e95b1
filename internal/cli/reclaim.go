package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/reclaim"
)

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
	rep := &reclaim.Report{QEMU: id.String(), DryRun: *dry, Notes: []string{}, Files: []reclaim.Verdict{}}
	if fs.NArg() > 0 {
		for _, p := range fs.Args() {
			if !filepath.IsAbs(p) {
				return withCode(ExitUsage, fmt.Errorf("%s: give absolute paths", p))
			}
			rep.Roots = append(rep.Roots, filepath.Clean(p))
		}
	} else if rep.Roots, rep.Notes, err = reclaim.DefaultRoots(s.hook.StoragePoolDir); err != nil {
		return err
	}
	files, notes, err := reclaim.Scan(rep.Roots, id.UID)
	if err != nil {
		return withCode(ExitInput, err)
	}
	rep.Notes = append(rep.Notes, notes...)
	env := reclaim.Env{StateDir: s.hook.StateDir, LockTimeout: s.hook.LockTimeout,
		QEMU: owner.UIDGID{UID: id.UID, GID: id.GID}, Force: to, Policy: s.planEnv(false).Policy,
		AllowHardlinks: s.hook.AllowHardlinks, ClusterDirs: clusterRecordDirs(s), Log: s.log}
	if err := env.Judge(rep, files); err != nil {
		return err
	}
	var gerr error
	if !*dry {
		gerr = env.GiveBack(rep)
	}
	if *asJSON {
		if err := writeJSON(e.stdout, rep); err != nil {
			return err
		}
	} else if err := printReclaim(e, rep); err != nil {
		return err
	}
	return gerr
}

func printReclaim(e *env, rep *reclaim.Report) error {
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
