package cli

import (
	"errors"
	"strings"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/doctor"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

func cmdDoctor(e *env, args []string) error {
	fs := newFlags(e, "doctor", "doctor [--json] [--fix] [DOMAIN-XML|-]\n\nChecks qemu.conf, the installed hook, libvirt's state directories and, given a domain XML,\nwhether QEMU will be able to open every resource. Exit status 1 when it finds a problem (warnings alone exit 0).")
	asJSON := fs.Bool("json", false, "print JSON")
	fix := fs.Bool("fix", false, "give libvirt's QEMU state directories to the user/group from qemu.conf")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := loadSetup(e, false)
	if err != nil {
		return err
	}
	defer s.Close()
	_, idErr := s.identity()
	env := doctor.Env{Hook: s.hook, QEMU: s.qemu, RunAs: s.runAs, RunAsErr: idErr, Plan: s.planEnv(false), Log: s.log, Fix: *fix}
	rep := doctor.Check(env)
	if fs.NArg() > 0 && idErr == nil {
		xml, err := readInput(e, fs.Args())
		if err != nil {
			return err
		}
		d, err := domain.Parse(xml)
		if err != nil {
			return withCode(ExitInput, err)
		}
		rep.CheckDomain(env, d)
	}
	if *asJSON {
		err = writeJSON(e.stdout, rep)
	} else {
		err = printDoctor(e, rep)
	}
	if err != nil {
		return err
	}
	if rep.Problems > 0 {
		return withCode(ExitFailed, errors.New(rep.Summary()))
	}
	return nil
}

// printDoctor writes the report as text; it returns the first write
// error (stdout closed, a full disk), after which it writes nothing more.
func printDoctor(e *env, rep *doctor.Report) error {
	out := &printer{w: e.stdout}
	out.printf("libvirt-dac-hook %s doctor (qemu.conf: %s, QEMU runs as %s, %s mode)\n", rep.Version, rep.QEMUConf, rep.User, rep.Mode)
	for _, f := range rep.Findings {
		out.printf("[%s] %s: %s\n", strings.ToUpper(f.Status), f.Check, f.Detail)
		if f.Fix != "" && f.Status != doctor.StatusOK {
			out.printf("       fix: %s\n", f.Fix)
		}
	}
	if rep.Domain != "" {
		out.printf("domain %s:\n", rep.Domain)
		for _, v := range rep.Resources {
			rw := "-"
			if v.Read {
				rw = "r"
			}
			if v.Write {
				rw += "w"
			}
			out.printf("[%s] %-10s %-4s %s  (%s)", strings.ToUpper(v.Status), v.Kind, rw, v.Path, v.From)
			if v.Detail != "" {
				out.printf(": %s", v.Detail)
			}
			out.printf("\n")
		}
	}
	out.printf("%s\n", rep.Summary())
	return out.flush()
}
