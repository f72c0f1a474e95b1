package cli

import (
	"errors"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
)

// restoreInventories gives back what the inventories of domains that no
// longer run vouch for: left by a host crash (an earlier boot) or by a
// release that never finished. selected says which domains the restore
// is for ("" = every domain that is not running).
func restoreInventories(s *setup, r *apply.Runner, domain string) error {
	// A damaged record is reported, never a reason to skip the others.
	recs, err := inventory.List(s.hook.StateDir)
	errs := []error{err}
	for _, rec := range recs {
		if domain != "" && rec.Domain != domain {
			continue
		}
		if domain == "" && rec.BootID == r.Store.BootID {
			if _, err := runningDomain(rec.Domain); err == nil || !errors.Is(err, errNotRunning) {
				continue // still running, or cannot tell: its release will come
			}
		}
		forget := func() error { return inventory.Remove(s.hook.StateDir, rec.Domain) }
		if err := r.ReleaseInventory(rec, "restore", forget); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
