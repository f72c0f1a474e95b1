package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

// bootSummary is the message of the one line `boot` logs when it gave
// anything back.
const bootSummary = "boot: gave back stale records"

// bootLockTimeout bounds the wait for the state lock at boot. Nothing
// else should hold it then (libvirtd has not started), so a long wait
// means a stuck process, and boot must not wait for it.
const bootLockTimeout = 10 * time.Second

// cmdBoot is what libvirt-dac-hook-boot.service runs before libvirtd:
// after a host crash no release ever comes for the domains that were
// running, so their records (held by a domain of an earlier boot) are
// given back here, before libvirtd autostarts guests and prepares them
// again. It writes nothing when nothing is stale, and nothing at all (not
// even the state directory) when the hook never ran on this host.
func cmdBoot(e *env, args []string) error {
	fs := newFlags(e, "boot", "boot [--lock-timeout DURATION]\n\nAt boot, before libvirtd: `restore --stale` that does nothing (and creates nothing) when nothing is stale,\nwaits for the state lock only briefly, and logs one summary line.")
	lockTimeout := fs.Duration("lock-timeout", bootLockTimeout, "longest wait for the state lock")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return withCode(ExitUsage, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	s, err := loadSetup(e, false)
	if err != nil {
		return err
	}
	defer s.Close()
	log := s.log.WithField("op", "boot")
	stale, err := staleRecords(s.hook.StateDir)
	if err != nil {
		return withCode(ExitState, err)
	}
	if stale == 0 && !staleInventories(s.hook.StateDir) && !staleClusterHolds(s) {
		log.Debug("no stale records")
		return nil
	}
	st, err := journal.Open(s.hook.StateDir, *lockTimeout)
	if err != nil {
		return withCode(ExitState, err)
	}
	r := s.runnerOn(st)
	r.DryRun = false
	rerr := r.Restore(apply.Selector{Stale: true})
	// What libvirt labelled during the runs the crash ended, as far as
	// the watcher saw it.
	rerr = errors.Join(rerr, restoreInventories(s, r, ""))
	// This host's holds of shared files from before the crash: the other
	// hosts keep those files with QEMU until they go.
	rerr = errors.Join(rerr, releaseOwnHolders(s, r, false, "boot"))
	left, err := staleRecords(s.hook.StateDir)
	if err != nil {
		return withCode(ExitState, errors.Join(rerr, err))
	}
	fields := logrus.Fields{"stale": stale, "given_back": stale - left, "left": left}
	if rerr != nil {
		log.WithFields(fields).WithError(rerr).Error(bootSummary)
		return rerr
	}
	log.WithFields(fields).Info(bootSummary)
	return nil
}

// staleRecords counts the records of dir's state file that no domain of
// this boot holds, reading without the lock and without creating
// anything: 0 when dir or its state file does not exist.
func staleRecords(dir string) (int, error) {
	st, err := journal.LoadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		// A damaged file is for Restore to move aside and report.
		if errors.Is(err, journal.ErrDamaged) {
			return 1, nil
		}
		return 0, err
	}
	boot, err := journal.CurrentBootID()
	if err != nil {
		return 0, err
	}
	return len(st.Unheld(boot)), nil
}

// staleInventories reports whether a domain's record of directories is
// left from an earlier boot: the watcher may have seen files labelled in
// that run, to give back now.
func staleInventories(dir string) bool {
	boot, err := journal.CurrentBootID()
	if err != nil {
		return false
	}
	recs, _ := inventory.List(dir)
	for _, r := range recs {
		if r.BootID != boot {
			return true
		}
	}
	return false
}

// staleClusterHolds reports whether a cluster record of a shared file
// names this host on an earlier boot. It creates no record directory.
func staleClusterHolds(s *setup) bool {
	me := journal.ReadHostID(s.hook.StateDir)
	boot, err := journal.CurrentBootID()
	if me == "" || err != nil {
		return false
	}
	recs, _ := apply.Records(clusterRecordDirs(s), bootLockTimeout)
	for _, rs := range recs {
		for _, r := range rs {
			for _, h := range r.Holders {
				if h.Host == me && h.Boot != boot {
					return true
				}
			}
		}
	}
	return false
}
