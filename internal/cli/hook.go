package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// MaxXML bounds the domain XML read from stdin: what Parse accepts.
const MaxXML = domain.MaxXMLSize

// runHook handles a call from libvirtd: a = DOMAIN OP SUBOP EXTRA. Only
// prepare, start begin (checked) and release do anything; everything else returns before reading stdin or any file.
func runHook(e *env, a []string) int {
	name, op, extra := a[0], a[1], a[3]
	if op != "prepare" && op != "release" && (op != "start" || a[2] != "begin") {
		return ExitOK
	}
	err := hook(e, name, op, extra)
	if err != nil {
		// Nowhere left to report a failed write of the report itself.
		_, _ = fmt.Fprintf(e.stderr, "libvirt-dac-hook: %s\n", domain.OneLine(fmt.Sprintf("%s domain %s: %s", op, name, err)))
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
	switch op {
	case "release":
		return releaseHook(s, r, name, extra)
	case "start":
		return startHook(e, s, r, name)
	}
	return prepareHook(e, s, r, name)
}

// startHook runs after libvirt labelled everything and before QEMU
// starts: the chains libvirt found itself (and, in cooperative mode,
// labelled) must be the ones prepare checked. In strict mode nothing else
// changed an owner, but QEMU opens what the headers say now, so the same
// check keeps it to what prepare checked.
func startHook(e *env, s *setup, r *apply.Runner, name string) error {
	if s.hook.DryRun {
		return nil
	}
	d, err := readDomain(e, name)
	if err != nil {
		return err
	}
	err = r.VerifyStart(d, func(label string) bool {
		if label == "" {
			id, err := s.identity()
			return err == nil && id.UID == 0
		}
		id, err := config.ParseLabel(label)
		return err == nil && id.UID == 0
	})
	if err != nil {
		s.log.WithField("domain", name).WithField("op", "start").WithError(err).Error("start refused")
	}
	return err
}

// readDomain reads and parses the domain XML libvirtd passes on stdin.
func readDomain(e *env, name string) (*domain.Domain, error) {
	xml, err := readXML(e.stdin)
	if err != nil {
		return nil, withCode(ExitInput, err)
	}
	d, err := domain.Parse(xml)
	if err != nil {
		return nil, withCode(ExitInput, err)
	}
	if d.Name != "" && d.Name != name {
		return nil, withCode(ExitInput, fmt.Errorf("XML on stdin is for domain %q", d.Name))
	}
	if err := domain.CheckName(d.Name); err != nil {
		return nil, withCode(ExitInput, err)
	}
	d.Name = name
	return d, nil
}

// releaseHook gives back what the journal holds for the domain and, in
// cooperative mode, what libvirt labelled during the run and left wrong.
// It reads no stdin: the journal and the inventory are the records.
func releaseHook(s *setup, r *apply.Runner, name, extra string) error {
	if err := domain.CheckName(name); err != nil {
		// Prepare refuses such a name, so nothing is recorded under it.
		return withCode(ExitInput, err)
	}
	log := s.log.WithField("domain", name)
	reason, known := parseReason(extra)
	if !known {
		log.WithField("reason", extra).Warn("release reason unknown to this hook: released as if libvirt had given none")
	}
	err := r.Release(name, reason)
	if err != nil {
		log.WithError(err).Error("release incomplete")
	}
	if s.hook.DryRun {
		return err
	}
	sync := func(gen int64) { syncWatcher(s, name, gen, "release") }
	if lerr := r.ReleaseLive(name, sync); lerr != nil {
		log.WithError(lerr).Error("release of files labelled during the run incomplete")
		err = errors.Join(err, lerr)
	}
	return err
}

// parseReason reads the 4th argument of `release end`: "-" from libvirt
// before 10.5, a shutoff reason after (apply.Reason). A reason this hook
// does not know (a later libvirt's) is not an error, since release must
// never fail for it: it counts as none given, and known is false.
func parseReason(extra string) (reason apply.Reason, known bool) {
	switch r := apply.Reason(extra); r {
	case apply.ReasonNone, apply.ReasonUnknown, apply.ReasonShutdown, apply.ReasonDestroyed, apply.ReasonCrashed,
		apply.ReasonMigrated, apply.ReasonSaved, apply.ReasonFailed, apply.ReasonFromSnapshot, apply.ReasonDaemon:
		return r, true
	case "":
		return apply.ReasonNone, true
	}
	return apply.ReasonNone, false
}

// prepareHook checks and carries out the domain's plan and, in
// cooperative mode, records what the watcher follows during the run.
func prepareHook(e *env, s *setup, r *apply.Runner, name string) error {
	d, err := readDomain(e, name)
	if err != nil {
		return err
	}
	if err := apply.CheckTransient(d, s.qemu); err != nil {
		return err
	}
	if _, err := s.identity(); err != nil {
		return err
	}
	log := s.log.WithField("domain", name)
	p, err := plan.Build(d, s.planEnv(false))
	if err != nil {
		log.WithError(err).Error("prepare refused")
		return err
	}
	defer p.Close()
	if err := r.Prepare(p); err != nil {
		log.WithError(err).Error("prepare failed")
		return err
	}
	if !s.watchesLive() {
		return nil
	}
	gen, err := r.RecordLive(p)
	if err != nil {
		log.WithError(err).Warn("files libvirt labels during the run will keep the owner libvirt leaves")
	} else if gen != 0 {
		syncWatcher(s, name, gen, "prepare")
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
