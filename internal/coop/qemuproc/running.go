package qemuproc

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

// RunDir is libvirt's run directory of its QEMU domains: NAME.pid and
// NAME.xml (a <domstatus> wrapping the live <domain>), and ProcRoot is
// where processes are read. Tests point them at trees of their own.
var (
	RunDir   = "/run/libvirt/qemu"
	ProcRoot = "/proc"
)

// ErrNotRunning is wrapped when Running finds no running QEMU for a
// domain.
var ErrNotRunning = errors.New("is not running")

// ErrBadName is wrapped when Running is given a name that cannot be a
// domain's file in RunDir.
var ErrBadName = errors.New("is not a domain name")

// Running reads libvirtd's status of the running domain name, without
// calling back into libvirt: its pid file must name a live process whose
// executable is named like QEMU (no proof alone, but the pid file is
// root's to write: this tells a QEMU from a process that reused its pid),
// and its status XML must hold the domain. The error wraps ErrNotRunning
// when the domain does not run.
func Running(name string) (*domain.Domain, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("%q %w", name, ErrBadName)
	}
	notRunning := func(why string) error {
		return fmt.Errorf("domain %s %w (%s): start it first; files for a domain that is not running are given at its prepare", name, ErrNotRunning, why)
	}
	pidFile := filepath.Join(RunDir, name+".pid")
	if _, err := os.Lstat(pidFile); err != nil {
		return nil, notRunning("no " + pidFile)
	}
	pid, ok := ReadPid(pidFile)
	if !ok || unix.Kill(pid, 0) != nil || !IsQEMU(filepath.Join(ProcRoot, strconv.Itoa(pid))) {
		return nil, notRunning("its pid file names no running QEMU")
	}
	statusFile := filepath.Join(RunDir, name+".xml")
	raw, err := os.ReadFile(statusFile)
	if err != nil {
		return nil, notRunning("no status XML")
	}
	inner, err := statusDomain(raw)
	if err != nil {
		return nil, fmt.Errorf("domain %s: status XML %s: %w", name, statusFile, err)
	}
	d, err := domain.Parse(inner)
	if err != nil {
		return nil, fmt.Errorf("domain %s: status XML: %w", name, err)
	}
	if d.Name != name {
		return nil, fmt.Errorf("domain %s: status XML is for domain %q", name, d.Name)
	}
	return d, nil
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

// ReadPid reads a pid file (a decimal number, maybe a newline), the way
// libvirt and its daemons write them. It opens the file O_NOFOLLOW and
// O_NONBLOCK, so a symlink or a FIFO planted there names no process and
// cannot hang the caller. ok is false for anything but a pid above 1.
func ReadPid(p string) (pid int, ok bool) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	f := os.NewFile(uintptr(fd), p)
	defer func() { _ = f.Close() }() // read only
	b := make([]byte, 32)
	n, _ := f.Read(b)
	pid, err = strconv.Atoi(strings.TrimSpace(string(b[:n])))
	return pid, err == nil && pid > 1
}
