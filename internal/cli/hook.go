package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// MaxXML bounds the domain XML read from stdin: what Parse accepts.
const MaxXML = domain.MaxXMLSize

// runHook handles a call from libvirtd: a = DOMAIN OP SUBOP EXTRA. Only
// prepare and release do anything; everything else returns before reading
// stdin or any file.
func runHook(e *env, a []string) int {
	name, op, extra := a[0], a[1], a[3]
	if op != "prepare" && op != "release" {
		return ExitOK
	}
	err := hook(e, name, op, extra)
	if err != nil {
		fmt.Fprintf(e.stderr, "libvirt-dac-hook: %s domain %s: %s\n", op, name, domain.OneLine(err.Error()))
	}
	return exitCode(err)
}

func hook(e *env, name, op, extra string) error {
	s, err := loadSetup(e, true)
	if err != nil {
		return err
	}
	defer s.Close()
	r, err := s.runner()
	if err != nil {
		return err
	}
	if op == "release" {
		err := r.Release(name, extra)
		if err != nil {
			s.log.WithField("domain", name).WithError(err).Error("release incomplete")
		}
		return err
	}
	xml, err := readXML(e.stdin)
	if err != nil {
		return withCode(ExitInput, err)
	}
	d, err := domain.Parse(xml)
	if err != nil {
		return withCode(ExitInput, err)
	}
	if d.Name != "" && d.Name != name {
		return withCode(ExitInput, fmt.Errorf("XML on stdin is for domain %q", d.Name))
	}
	d.Name = name
	if _, err := s.identity(); err != nil {
		return err
	}
	p, err := plan.Build(d, s.planEnv(false))
	if err != nil {
		s.log.WithField("domain", name).WithError(err).Error("prepare refused")
		return err
	}
	defer p.Close()
	if err := r.Prepare(p); err != nil {
		s.log.WithField("domain", name).WithError(err).Error("prepare failed")
		return err
	}
	return nil
}

func readXML(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, MaxXML+1))
	if err != nil {
		return nil, fmt.Errorf("read domain XML from stdin: %w", err)
	}
	if n > MaxXML {
		return nil, fmt.Errorf("domain XML on stdin is larger than %d MiB", MaxXML>>20)
	}
	if n == 0 {
		return nil, errors.New("no domain XML on stdin")
	}
	return buf.Bytes(), nil
}
