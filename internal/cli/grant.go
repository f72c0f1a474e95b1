package cli

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/qemuproc"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// libvirtRunDir is where libvirtd keeps the status of running QEMU
// domains: NAME.pid and NAME.xml (a <domstatus> wrapping the live
// <domain>). Reading it is how grant knows a domain runs, and as whom,
// without calling back into libvirt.
var libvirtRunDir = "/run/libvirt/qemu"

// errNotRunning is wrapped when grant or revoke names a domain that is
// not running.
var errNotRunning = errors.New("is not running")

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
	live, err := runningDomain(name)
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

// liveDomain is what grant needs from a running domain's status XML.
type liveDomain struct {
	UUID    string
	Label   string
	Relabel bool
}

// runningDomain reads libvirtd's status of domain name: its pid file must
// name a live process and its status XML must hold the domain.
func runningDomain(name string) (liveDomain, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return liveDomain{}, withCode(ExitUsage, fmt.Errorf("%q is not a domain name", name))
	}
	notRunning := func(why string) error {
		return fmt.Errorf("domain %s %w (%s): start it first; files for a domain that is not running are given at its prepare", name, errNotRunning, why)
	}
	pidb, err := os.ReadFile(filepath.Join(libvirtRunDir, name+".pid"))
	if err != nil {
		return liveDomain{}, notRunning("no " + filepath.Join(libvirtRunDir, name+".pid"))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidb)))
	if err != nil || pid <= 0 || unix.Kill(pid, 0) != nil || !qemuproc.IsQEMU(filepath.Join(procRoot, strconv.Itoa(pid))) {
		return liveDomain{}, notRunning("its pid file names no running QEMU")
	}
	raw, err := os.ReadFile(filepath.Join(libvirtRunDir, name+".xml"))
	if err != nil {
		return liveDomain{}, notRunning("no status XML")
	}
	inner, err := statusDomain(raw)
	if err != nil {
		return liveDomain{}, fmt.Errorf("domain %s: status XML %s: %w", name, filepath.Join(libvirtRunDir, name+".xml"), err)
	}
	d, err := domain.Parse(inner)
	if err != nil {
		return liveDomain{}, fmt.Errorf("domain %s: status XML: %w", name, err)
	}
	if d.Name != name {
		return liveDomain{}, fmt.Errorf("domain %s: status XML is for domain %q", name, d.Name)
	}
	return liveDomain{UUID: d.UUID, Label: d.Label, Relabel: d.Relabel}, nil
}

// statusDomain cuts the <domain> element out of libvirt's <domstatus>.
func statusDomain(raw []byte) ([]byte, error) {
	dec := xml.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("no <domain> element: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "domain" {
			continue
		}
		start := dec.InputOffset()
		if err := dec.Skip(); err != nil {
			return nil, fmt.Errorf("<domain>: %w", err)
		}
		// InputOffset after the start tag; find where that tag began.
		open := bytes.LastIndex(raw[:start], []byte("<domain"))
		if open < 0 {
			return nil, errors.New("no <domain> element")
		}
		return raw[open:dec.InputOffset()], nil
	}
}
