package cli

import (
	"fmt"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

// cmdBoot is what libvirt-dac-hook-boot.service runs before libvirtd: see
// apply.Boot.
func cmdBoot(e *env, args []string) error {
	fs := newFlags(e, "boot", "boot [--lock-timeout DURATION]\n\nAt boot, before libvirtd: `restore --stale` that does nothing (and creates nothing) when nothing is stale,\nwaits for the state lock only briefly, and logs one summary line.")
	lockTimeout := fs.Duration("lock-timeout", apply.BootLockTimeout, "longest wait for the state lock")
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
	open := func() (*apply.Runner, error) {
		st, err := journal.Open(s.hook.StateDir, *lockTimeout)
		if err != nil {
			return nil, journal.Unusable(err)
		}
		r := s.runnerOn(st)
		r.DryRun = false
		return r, nil
	}
	return apply.Boot(s.hook.StateDir, s.clusterDirs(), open, s.log.WithField("op", "boot"))
}
