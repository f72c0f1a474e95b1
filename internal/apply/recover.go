package apply

import (
	"errors"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cluster"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/qemuproc"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

// BootSummary is the message of the one line Boot logs when it gave
// anything back.
const BootSummary = "boot: gave back stale records"

// BootLockTimeout bounds the wait for the state lock at boot. Nothing
// else should hold it then (libvirtd has not started), so a long wait
// means a stuck process, and boot must not wait for it.
const BootLockTimeout = 10 * time.Second

// mountinfo is the mount table the cluster record directories are found
// in.
const mountinfo = "/proc/self/mountinfo"

// ClusterRecordDirs are the record directories of shared filesystems this
// host sees now.
func ClusterRecordDirs(d cluster.Dirs) []string { return d.Known(mountinfo) }

// Recover gives back, by hand or at boot, what no release will: the
// journal's entries sel picks, what the inventories of domains that no
// longer run vouch for (sel.Stale, sel.Domain), and this host's holds in
// the cluster records of shared files (sel.Stale: earlier boots'; sel.All:
// all). op names the caller in the log.
func (r *Runner) Recover(sel Selector, op string) error {
	err := r.Restore(sel)
	if sel.Stale || sel.Domain != "" {
		err = errors.Join(err, r.restoreInventories(sel.Domain))
	}
	if sel.Stale || sel.All {
		err = errors.Join(err, r.releaseOwnHolders(sel.All, op))
	}
	return err
}

// ForgetHost drops host gone's holds from every cluster record this host
// sees, and gives back the files no host holds any more: the answer to a
// host that died holding files on shared storage and never comes back.
func (r *Runner) ForgetHost(gone string) error {
	return r.ReleaseHolders(ClusterRecordDirs(r.Cluster), func(h cluster.Holder) bool { return h.Host == gone }, "forget-host")
}

// restoreInventories gives back what the inventories of domains that no
// longer run vouch for: left by a host crash (an earlier boot) or by a
// release that never finished. domain says which domain the restore is
// for ("" = every domain that is not running).
func (r *Runner) restoreInventories(domain string) error {
	dir := r.Store.Dir
	// A damaged record is reported, never a reason to skip the others.
	recs, err := inventory.List(dir)
	errs := []error{err}
	for _, rec := range recs {
		if domain != "" && rec.Domain != domain {
			continue
		}
		if domain == "" && rec.BootID == r.Store.BootID {
			if _, err := qemuproc.Running(rec.Domain); err == nil || !errors.Is(err, qemuproc.ErrNotRunning) {
				continue // still running, or cannot tell: its release will come
			}
		}
		forget := func() error { return inventory.Remove(dir, rec.Domain) }
		if err := r.ReleaseInventory(rec, "restore", forget); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// releaseOwnHolders drops this host's holds from the cluster records:
// those of earlier boots, or all.
func (r *Runner) releaseOwnHolders(all bool, op string) error {
	dirs := ClusterRecordDirs(r.Cluster)
	if len(dirs) == 0 {
		return nil
	}
	me, boot := r.Host(), r.Store.BootID
	return r.ReleaseHolders(dirs, func(h cluster.Holder) bool { return h.Host == me && (all || h.Boot != boot) }, op)
}

// Boot is what the boot unit runs before libvirtd: after a host crash no
// release ever comes for the domains that were running, so their records
// (held by a domain of an earlier boot), what the watcher saw libvirt
// label in those runs, and this host's holds of shared files from before
// the crash are given back, before libvirtd autostarts guests and
// prepares them again. It opens the journal (open) only when something is
// stale, so it writes nothing when nothing is, and creates nothing (not
// even the state directory) when the hook never ran on this host. It logs
// one summary line when it gave anything back.
func Boot(stateDir string, dirs cluster.Dirs, open func() (*Runner, error), log logrus.FieldLogger) error {
	stale, err := staleRecords(stateDir)
	if err != nil {
		return journal.Unusable(err)
	}
	if stale == 0 && !staleInventories(stateDir) && !staleClusterHolds(stateDir, dirs) {
		log.Debug("no stale records")
		return nil
	}
	r, err := open()
	if err != nil {
		return err
	}
	rerr := r.Recover(Selector{Stale: true}, "boot")
	left, err := staleRecords(stateDir)
	if err != nil {
		return journal.Unusable(errors.Join(rerr, err))
	}
	fields := logrus.Fields{"stale": stale, "given_back": stale - left, "left": left}
	if rerr != nil {
		log.WithFields(fields).WithError(rerr).Error(BootSummary)
		return rerr
	}
	log.WithFields(fields).Info(BootSummary)
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
func staleClusterHolds(stateDir string, dirs cluster.Dirs) bool {
	me := journal.ReadHostID(stateDir)
	boot, err := journal.CurrentBootID()
	if me == "" || err != nil {
		return false
	}
	recs, _ := Records(ClusterRecordDirs(dirs), BootLockTimeout)
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
