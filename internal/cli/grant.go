package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/qemuproc"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
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
	d := &domain.Domain{Name: name, UUID: live.UUID, Label: live.Label, Relabel: live.Relabel}
	for _, p := range paths {
		r, err := grantResource(p, *format)
		if err != nil {
			return withCode(ExitInput, fmt.Errorf("domain %s: %w", name, err))
		}
		d.Resources = append(d.Resources, r)
	}
	p, err := plan.Build(d, s.planEnv(false))
	if err != nil {
		return fmt.Errorf("domain %s: %w", name, err)
	}
	defer p.Close()
	r, err := s.runner()
	if err != nil {
		return err
	}
	r.Op = "grant"
	if err := r.Prepare(p); err != nil {
		return fmt.Errorf("domain %s: %w", name, err)
	}
	for _, st := range p.Steps {
		if st.Action == plan.Chown || st.Action == plan.Keep {
			if _, err := fmt.Fprintf(e.stdout, "granted %s to %s (%s)\n", st.Path, name, st.Target); err != nil {
				return err
			}
		}
	}
	return nil
}

// grantResource turns a PATH argument into the resource prepare would
// have for a disk with that source: regular files and block devices are
// disk images, character devices host devices.
func grantResource(p, format string) (domain.Resource, error) {
	if !filepath.IsAbs(p) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return domain.Resource{}, fmt.Errorf("%s: %w", p, err)
		}
		p = abs
	}
	p = filepath.Clean(p)
	fi, err := os.Stat(p)
	if err != nil {
		return domain.Resource{}, fmt.Errorf("%s: %w", p, err)
	}
	r := domain.Resource{Path: p, From: "grant"}
	switch m := fi.Mode(); {
	case m.IsRegular(), m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		r.Kind, r.Expect, r.Format = domain.KindDisk, domain.TypeRegular|domain.TypeBlock, format
		r.ProbeBacking = format != "raw"
	case m&fs.ModeCharDevice != 0:
		r.Kind, r.Expect = domain.KindHostdevChar, domain.TypeChar
	default:
		return domain.Resource{}, fmt.Errorf("%s is a %s: grant hands over disk images, block devices and device nodes", p, m.Type())
	}
	return r, nil
}

func cmdRevoke(e *env, args []string) error {
	fs := newFlags(e, "revoke", revokeSynopsis)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return withCode(ExitUsage, errors.New("usage: libvirt-dac-hook "+strings.SplitN(revokeSynopsis, "\n", 2)[0]))
	}
	name, paths := fs.Arg(0), fs.Args()[1:]
	s, err := loadSetup(e, false)
	if err != nil {
		return err
	}
	defer s.Close()
	ids := make([]owner.ID, 0, len(paths))
	for _, p := range paths {
		h, err := owner.Open(p)
		if err != nil {
			return withCode(ExitInput, fmt.Errorf("domain %s: %w", name, err))
		}
		ids = append(ids, h.ID())
		h.Close()
	}
	r, err := s.runner()
	if err != nil {
		return err
	}
	return r.Revoke(name, ids)
}
