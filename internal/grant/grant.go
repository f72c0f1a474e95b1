package grant

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// PathError is a path given that cannot be granted or revoked as it is:
// missing, or of a type grant does not hand over. Its text is the
// wrapped error's.
type PathError struct{ Err error }

func (e *PathError) Error() string { return e.Err.Error() }
func (e *PathError) Unwrap() error { return e.Err }

// Domain is what a grant prepares: running domain live's identity (name,
// UUID, seclabel) with one resource per path, each of image format format.
// Its error is a *PathError.
func Domain(live *domain.Domain, paths []string, format string) (*domain.Domain, error) {
	d := &domain.Domain{Name: live.Name, UUID: live.UUID, Label: live.Label, Relabel: live.Relabel}
	for _, p := range paths {
		r, err := resource(p, format)
		if err != nil {
			return nil, &PathError{fmt.Errorf("domain %s: %w", live.Name, err)}
		}
		d.Resources = append(d.Resources, r)
	}
	return d, nil
}

// resource turns a PATH argument into the resource prepare would have
// for a disk with that source: regular files and block devices are disk
// images, character devices host devices.
func resource(p, format string) (domain.Resource, error) {
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

// Grant plans d under env and prepares it with the Runner open gives
// (opened only once the plan holds): all or nothing, as a prepare. The
// caller closes the plan it returns, whose Chown and Keep steps are the
// files granted.
func Grant(d *domain.Domain, env plan.Env, open func() (*apply.Runner, error)) (*plan.Plan, error) {
	p, err := plan.Build(d, env)
	if err != nil {
		return nil, fmt.Errorf("domain %s: %w", d.Name, err)
	}
	r, err := open()
	if err != nil {
		p.Close()
		return nil, err
	}
	r.Op = "grant"
	if err := r.Prepare(p); err != nil {
		p.Close()
		return nil, fmt.Errorf("domain %s: %w", d.Name, err)
	}
	return p, nil
}

// Revoke gives back early what domain name holds of paths, with the
// Runner open gives: the inodes they name now are the ones revoked. An
// error opening a path is a *PathError.
func Revoke(name string, paths []string, open func() (*apply.Runner, error)) error {
	ids := make([]owner.ID, 0, len(paths))
	for _, p := range paths {
		h, err := owner.Open(p)
		if err != nil {
			return &PathError{fmt.Errorf("domain %s: %w", name, err)}
		}
		ids = append(ids, h.ID())
		h.Close()
	}
	r, err := open()
	if err != nil {
		return err
	}
	return r.Revoke(name, ids)
}
