package cli

import (
	"errors"
	"strings"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/qemuproc"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/grant"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

const grantSynopsis = `grant [--format raw|qcow2|...] DOMAIN PATH...

Gives files to the QEMU of running domain DOMAIN before you hot-plug them
(virsh attach-disk, attach-device, change-media, blockcopy --reuse-external),
with the same checks, journal and log lines as prepare. They are given back
when the domain is released (it stops), or earlier with revoke. Needed in
strict mode (dynamic_ownership = 0); in cooperative mode libvirt labels
hot-plugged files itself and grant only makes the hook record their owners.`

const revokeSynopsis = `revoke DOMAIN PATH...

Gives back files that grant (or prepare) gave to running domain DOMAIN,
once you have detached them, without waiting for the domain to stop.`

func cmdGrant(e *env, args []string) error {
	fs := newFlags(e, "grant", grantSynopsis)
	format := fs.String("format", "raw", "image format of every PATH, as in the <driver type=...> you will attach; formats with backing files (qcow2, ...) have their chain granted too")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return withCode(ExitUsage, errors.New("usage: libvirt-dac-hook "+strings.SplitN(grantSynopsis, "\n", 2)[0]))
	}
	name, paths := fs.Arg(0), fs.Args()[1:]
	s, err := loadSetup(e, false)
	if err != nil {
		return err
	}
	defer s.Close()
	live, err := qemuproc.Running(name)
	if errors.Is(err, qemuproc.ErrBadName) {
		return withCode(ExitUsage, err)
	}
	if err != nil {
		return err
	}
	if _, err := s.identity(); err != nil {
		return withCode(ExitConfig, err)
	}
	d, err := grant.Domain(live, paths, *format)
	if err != nil {
		return withCode(ExitInput, err)
	}
	p, err := grant.Grant(d, s.planEnv(false), s.runner)
	if err != nil {
		return err
	}
	defer p.Close()
	out := &printer{w: e.stdout}
	for _, st := range p.Steps {
		if st.Action == plan.Chown || st.Action == plan.Keep {
			out.printf("granted %s to %s (%s)\n", st.Path, name, st.Target)
		}
	}
	return out.flush()
}

func cmdRevoke(e *env, args []string) error {
	fs := newFlags(e, "revoke", revokeSynopsis)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return withCode(ExitUsage, errors.New("usage: libvirt-dac-hook "+strings.SplitN(revokeSynopsis, "\n", 2)[0]))
	}
	s, err := loadSetup(e, false)
	if err != nil {
		return err
	}
	defer s.Close()
	err = grant.Revoke(fs.Arg(0), fs.Args()[1:], s.runner)
	var bad *grant.PathError
	if errors.As(err, &bad) {
		return withCode(ExitInput, err)
	}
	return err
}
