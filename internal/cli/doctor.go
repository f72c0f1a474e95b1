package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/version"
)

// Doctor verdicts.
const (
	statusOK      = "ok"
	statusWarn    = "warn"
	statusProblem = "problem"
)

type finding struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

type verdict struct {
	Path     string `json:"path"`
	Kind     string `json:"kind"`
	From     string `json:"from"`
	Action   string `json:"action"`
	Read     bool   `json:"qemu_can_read"`
	Write    bool   `json:"qemu_can_write"`
	ReadOnly bool   `json:"readonly_disk,omitempty"`
	FSType   string `json:"fs_type,omitempty"`
	ACLs     bool   `json:"fs_acls"`
	RO       bool   `json:"readonly_mount,omitempty"`
	Status   string `json:"status"`
	Detail   string `json:"detail,omitempty"`
}

type report struct {
	Version   string    `json:"version"`
	QEMUConf  string    `json:"qemu_conf"`
	User      string    `json:"qemu_user"`
	Findings  []finding `json:"findings"`
	Domain    string    `json:"domain,omitempty"`
	Resources []verdict `json:"resources,omitempty"`
	// Mode is "cooperative" (libvirt's DAC driver labels too) or
	// "strict" (only the hook changes owners), from dynamic_ownership.
	Mode          string `json:"mode"`
	RememberOwner bool   `json:"remember_owner"`
	Problems      int    `json:"problems"`
	Warnings      int    `json:"warnings"`
}

func (r *report) add(f finding) {
	r.count(f.Status)
	r.Findings = append(r.Findings, f)
}

func (r *report) count(status string) {
	switch status {
	case statusProblem:
		r.Problems++
	case statusWarn:
		r.Warnings++
	}
}

// hookPath is where libvirt looks for the qemu hook.
var hookPath = "/etc/libvirt/hooks/qemu"

// stateDirs are the libvirt directories doctor checks: QEMU must be able
// to search each one (drvqemu.rst).
var stateDirs = libvirtStateDirs

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
	rep := &report{Version: version.Version, QEMUConf: s.qemu.Path}
	id, idErr := s.identity()
	if idErr != nil {
		rep.add(finding{"qemu user", statusProblem, idErr.Error(), "set user/group in " + s.qemu.Path + " to accounts that exist"})
	} else {
		rep.User = id.String()
	}
	checkQEMUConf(rep, s)
	checkHookInstalled(rep)
	checkBootUnit(rep)
	checkWatcher(rep, s)
	if idErr == nil {
		checkStateDirs(rep, s, *fix)
	}
	if fs.NArg() > 0 && idErr == nil {
		xml, err := readInput(e, fs.Args())
		if err != nil {
			return err
		}
		d, err := domain.Parse(xml)
		if err != nil {
			return withCode(ExitInput, err)
		}
		checkDomain(rep, s, d)
	}
	if *asJSON {
		if err := writeJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		if err := printReport(e, rep); err != nil {
			return err
		}
	}
	if rep.Problems > 0 {
		return withCode(ExitFailed, errors.New(verdictLine(rep)))
	}
	return nil
}

// checkQEMUConf reports the mode qemu.conf puts the hook in. Both are
// valid; cooperative is recommended because libvirt's own labelling
// covers what happens during the run (hot-plug, media change, snapshots,
// block jobs, transient disks), while the hook's journal keeps the true
// original owners that libvirt loses or never knew.
func checkQEMUConf(rep *report, s *setup) {
	q := s.qemu
	rep.RememberOwner = q.RememberOwnerEnabled()
	remember := "0"
	if rep.RememberOwner {
		remember = "1"
	}
	rep.Mode = string(q.Mode())
	if q.Mode() == config.Cooperative {
		rep.add(finding{"mode", statusOK,
			"cooperative (recommended; dynamic_ownership = 1, remember_owner = " + remember + "): libvirt's DAC driver labels files during the run, so hot-plug, media change, snapshots, block jobs and transient disks work; the hook records the true original owners at prepare and puts back what libvirt restores wrongly at release", ""})
	} else {
		rep.add(finding{"mode", statusOK,
			"strict (dynamic_ownership = 0): only the hook changes owners; a disk hot-plugged or a medium changed while the domain runs needs `libvirt-dac-hook grant DOMAIN PATH...` first, and transient disks are refused; cooperative mode is recommended: `dynamic_ownership = 1` in " + q.Path + ", then restart libvirtd",
			"for cooperative mode (recommended) set `dynamic_ownership = 1` in " + q.Path + " and restart libvirtd"})
	}
	if s.runAs.UID == 0 {
		rep.add(finding{"qemu user", statusWarn, "QEMU runs as root: the hook has nothing to do", "set user/group in " + q.Path})
	}
}

func checkHookInstalled(rep *report) {
	var st unix.Stat_t
	if err := unix.Stat(hookPath, &st); err != nil {
		rep.add(finding{"hook installed", statusProblem, hookPath + ": " + err.Error(), "run `make install` or install the package"})
		return
	}
	if st.Mode&0o111 == 0 {
		rep.add(finding{"hook installed", statusProblem, hookPath + " is not executable", "chmod 0755 " + hookPath})
		return
	}
	b, err := os.ReadFile(hookPath)
	if err != nil || !strings.Contains(string(b), version.Marker) {
		rep.add(finding{"hook installed", statusProblem, hookPath + " is not libvirt-dac-hook", "move it into " + hookPath + ".d/ and install libvirt-dac-hook"})
		return
	}
	rep.add(finding{"hook installed", statusOK, hookPath, ""})
	pid, start, ok := libvirtdStart()
	if !ok {
		rep.add(finding{"hook seen by libvirtd", statusWarn, "no running libvirtd or virtqemud found", "start libvirtd"})
		return
	}
	changed := time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec))
	if hookDir, err := os.Stat(filepath.Dir(hookPath)); err == nil && hookDir.ModTime().After(changed) {
		changed = hookDir.ModTime()
	}
	if changed.After(start) {
		rep.add(finding{"hook seen by libvirtd", statusProblem, fmt.Sprintf("the hook changed at %s, after libvirtd (pid %d) started at %s: libvirtd only looks for hooks when it starts", changed.Format(time.RFC3339), pid, start.Format(time.RFC3339)), "restart libvirtd (running VMs keep running)"})
		return
	}
	rep.add(finding{"hook seen by libvirtd", statusOK, fmt.Sprintf("libvirtd (pid %d) started after the hook was installed", pid), ""})
}

// libvirtdStart finds the running QEMU driver daemon and when it started.
func libvirtdStart() (int, time.Time, bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, time.Time{}, false
	}
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + en.Name() + "/comm")
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		if name != "libvirtd" && name != "virtqemud" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat("/proc/"+en.Name(), &st); err != nil {
			continue
		}
		return pid, time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)), true
	}
	return 0, time.Time{}, false
}

// checkStateDirs compares libvirt's QEMU state directories with qemu.conf's
// user. QEMU must be able to search them (it reaches its domain-N-NAME
// directories through them); one owned by another non-root user was most
// likely left behind when `user` changed in qemu.conf. Root-owned but
// searchable (Debian's /run/libvirt/qemu) is fine.
func checkStateDirs(rep *report, s *setup, fix bool) {
	want := s.runAs
	gids := append([]uint32{want.GID}, want.Groups...)
	for _, d := range stateDirs {
		h, err := owner.Open(d)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				rep.add(finding{"state dir " + d, statusWarn, err.Error(), ""})
			}
			continue
		}
		uid, gid := h.Owner()
		searchable := false
		if a, err := acl.Get(h.Fd(), h.Stat.Mode); err == nil {
			searchable = a.Allowed(uid, gid, want.UID, gids, acl.Exec)
		}
		status, detail := statusOK, fmt.Sprintf("owned by %d:%d, searchable by QEMU", uid, gid)
		switch {
		case !searchable:
			status, detail = statusProblem, fmt.Sprintf("owned by %d:%d, mode %o: QEMU (%s) cannot search it", uid, gid, h.Stat.Mode&0o7777, want)
		case uid != want.UID && uid != 0:
			status, detail = statusWarn, fmt.Sprintf("owned by uid %d, not QEMU's %s: was `user` changed in qemu.conf?", uid, want)
		}
		if status != statusOK && fix {
			if err := fixStateDir(s, h, want); err != nil {
				detail += "; fix failed: " + err.Error()
			} else {
				status, detail = statusOK, fmt.Sprintf("fixed: was %d:%d, now %d:%d", uid, gid, want.UID, want.GID)
			}
		}
		fixText := ""
		if status != statusOK {
			fixText = fmt.Sprintf("libvirt-dac-hook doctor --fix (chown %d:%d %s)", want.UID, want.GID, d)
		}
		rep.add(finding{"state dir " + d, status, detail, fixText})
		_ = h.Close() // O_PATH: nothing written through it
	}
}

// fixStateDir gives a libvirt state directory to QEMU's user through the
// handle doctor judged, after the same policy checks as every chown the
// hook makes (protected paths, type), and logs the change like one.
func fixStateDir(s *setup, h *owner.Handle, want config.Identity) error {
	if err := s.planEnv(false).Policy.Check(h, owner.Want{Types: domain.TypeDir}); err != nil {
		return err
	}
	uid, gid := h.Owner()
	if err := h.Chown(want.UID, want.GID); err != nil {
		return err
	}
	s.log.WithFields(logrus.Fields{"domain": "", "op": "doctor-fix", "path": h.Path,
		"from": fmt.Sprintf("%d:%d", uid, gid), "to": fmt.Sprintf("%d:%d", want.UID, want.GID)}).Info("chown")
	return nil
}

func checkDomain(rep *report, s *setup, d *domain.Domain) {
	rep.Domain = d.Name
	env := s.planEnv(true)
	p, err := plan.Build(d, env)
	if err != nil {
		rep.add(finding{"domain " + d.Name, statusProblem, err.Error(), ""})
		return
	}
	defer p.Close()
	for _, n := range p.Notes {
		rep.add(finding{"domain " + d.Name, statusWarn, n, ""})
	}
	for _, st := range p.Steps {
		v := verdict{Path: st.Path, Kind: st.Kind, From: st.From, Action: string(st.Action), ReadOnly: st.ReadOnly, Status: statusOK}
		switch {
		case st.Action == plan.Error:
			v.Status, v.Detail = statusProblem, st.Reason
		case st.Action == plan.SearchACL:
			v.Read, v.Write = false, false
			v.Detail = st.Reason + " at prepare"
		case st.Handle != nil:
			inspect(&v, st, s)
		default:
			v.Detail = st.Reason
		}
		rep.count(v.Status)
		rep.Resources = append(rep.Resources, v)
	}
}

// inspect judges one resource as QEMU will see it after prepare.
func inspect(v *verdict, st *plan.Step, s *setup) {
	h := st.Handle
	uid, gid := h.Owner()
	if st.Action == plan.Chown && st.Target != nil {
		uid, gid = st.Target.UID, st.Target.GID
	}
	target := s.runAs
	if st.Target != nil {
		target.UID, target.GID = st.Target.UID, st.Target.GID
	}
	gids := append([]uint32{target.GID}, target.Groups...)
	a, err := acl.Get(h.Fd(), h.Stat.Mode)
	if err == nil {
		v.Read = a.Allowed(uid, gid, target.UID, gids, acl.Read)
		v.Write = a.Allowed(uid, gid, target.UID, gids, acl.Write)
	}
	if sf, err := h.Statfs(); err == nil {
		v.FSType = fsName(int64(sf.Type))
		v.RO = sf.Flags&unix.ST_RDONLY != 0
		if owner.FSNoOwners(int64(sf.Type)) {
			v.Status, v.Detail = statusProblem, "on "+v.FSType+", which has no file owners: chown cannot work; move the image or mount it with uid=/gid= for QEMU's user"
			return
		}
		if owner.FSShared(int64(sf.Type)) && uid == 65534 {
			v.Detail = "on a network filesystem and owned by nobody: root squash likely stops the hook's chown; export with no_root_squash or give the file to QEMU's user on the server"
			v.Status = statusProblem
		}
	}
	v.ACLs = aclSupported(filepath.Dir(h.Path))
	switch {
	case !v.Read:
		v.Status, v.Detail = statusProblem, "QEMU cannot read it: the owner has no read permission in its mode"
	case !v.Write && !st.ReadOnly && !domain.Kind(st.Kind).ForcedReadOnly() && !domain.Kind(st.Kind).BootLoaded():
		v.Status, v.Detail = statusProblem, "QEMU cannot write it, but it is not a read-only disk"
	case v.RO && !st.ReadOnly && !domain.Kind(st.Kind).ForcedReadOnly():
		v.Status, v.Detail = statusProblem, "on a read-only mount, but QEMU opens it for writing"
	}
	if v.Status == statusOK && st.Action == plan.Chown && v.Detail == "" {
		v.Detail = fmt.Sprintf("prepare chowns it from %d:%d", st.Current.UID, st.Current.GID)
	}
}

func aclSupported(dir string) bool {
	_, err := unix.Getxattr(dir, "system.posix_acl_access", nil)
	return err == nil || errors.Is(err, unix.ENODATA)
}

// fsName names a statfs type, in hex when the hook does not know it.
func fsName(t int64) string {
	if n := owner.FSName(t); n != "" {
		return n
	}
	return fmt.Sprintf("0x%x", t)
}

// printReport writes the report as text; it returns the first write
// error (stdout closed, a full disk), after which it writes nothing more.
func printReport(e *env, rep *report) error {
	var err error
	p := func(format string, a ...any) {
		if err == nil {
			_, err = fmt.Fprintf(e.stdout, format, a...)
		}
	}
	p("libvirt-dac-hook %s doctor (qemu.conf: %s, QEMU runs as %s, %s mode)\n", rep.Version, rep.QEMUConf, rep.User, rep.Mode)
	for _, f := range rep.Findings {
		p("[%s] %s: %s\n", strings.ToUpper(f.Status), f.Check, f.Detail)
		if f.Fix != "" && f.Status != statusOK {
			p("       fix: %s\n", f.Fix)
		}
	}
	if rep.Domain != "" {
		p("domain %s:\n", rep.Domain)
		for _, v := range rep.Resources {
			rw := "-"
			if v.Read {
				rw = "r"
			}
			if v.Write {
				rw += "w"
			}
			p("[%s] %-10s %-4s %s  (%s)", strings.ToUpper(v.Status), v.Kind, rw, v.Path, v.From)
			if v.Detail != "" {
				p(": %s", v.Detail)
			}
			p("\n")
		}
	}
	p("%s\n", verdictLine(rep))
	return err
}

// verdictLine is doctor's last line: it counts what the lines above say.
func verdictLine(rep *report) string {
	return plural(rep.Problems, "problem") + ", " + plural(rep.Warnings, "warning")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
