package doctor

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
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/watch"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/version"
)

// Statuses of a finding.
const (
	StatusOK      = "ok"
	StatusWarn    = "warn"
	StatusProblem = "problem"
)

// Finding is one check and what it found.
type Finding struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Resource is how QEMU will find one resource of a domain after prepare.
type Resource struct {
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

// Report is everything doctor found.
type Report struct {
	Version   string     `json:"version"`
	QEMUConf  string     `json:"qemu_conf"`
	User      string     `json:"qemu_user"`
	Findings  []Finding  `json:"findings"`
	Domain    string     `json:"domain,omitempty"`
	Resources []Resource `json:"resources,omitempty"`
	// Mode is "cooperative" (libvirt's DAC driver labels too) or
	// "strict" (only the hook changes owners), from dynamic_ownership.
	Mode          string `json:"mode"`
	RememberOwner bool   `json:"remember_owner"`
	Problems      int    `json:"problems"`
	Warnings      int    `json:"warnings"`
}

func (r *Report) add(f Finding) {
	r.count(f.Status)
	r.Findings = append(r.Findings, f)
}

func (r *Report) count(status string) {
	switch status {
	case StatusProblem:
		r.Problems++
	case StatusWarn:
		r.Warnings++
	}
}

// HookPath is where libvirt looks for the qemu hook, and StateDirs the
// libvirt directories QEMU must be able to search (drvqemu.rst); tests
// point them at trees of their own.
var (
	HookPath  = "/etc/libvirt/hooks/qemu"
	StateDirs = config.LibvirtStateDirs
)

// watcherPing bounds the question whether a watcher answers.
const watcherPing = 2 * time.Second

// Env is the configuration doctor judges.
type Env struct {
	Hook config.Hook
	QEMU config.QEMU
	// RunAs is who QEMU runs as, unless RunAsErr says why that is unknown.
	RunAs    config.Identity
	RunAsErr error
	// Plan is how the hook builds plans under this configuration.
	Plan plan.Env
	// Log gets one line per change Fix makes.
	Log logrus.FieldLogger
	// Fix gives libvirt's QEMU state directories to QEMU's user.
	Fix bool
}

// Check runs every check of the host: qemu.conf's mode and user, the
// installed hook, the boot unit, the watcher and libvirt's state
// directories (fixing those when env.Fix says so).
func Check(env Env) *Report {
	rep := &Report{Version: version.Version, QEMUConf: env.QEMU.Path}
	if env.RunAsErr != nil {
		rep.add(Finding{"qemu user", StatusProblem, env.RunAsErr.Error(), "set user/group in " + env.QEMU.Path + " to accounts that exist"})
	} else {
		rep.User = env.RunAs.String()
	}
	checkQEMUConf(rep, env)
	checkHookInstalled(rep)
	checkBootUnit(rep)
	checkWatcher(rep, env)
	if env.RunAsErr == nil {
		checkStateDirs(rep, env)
	}
	return rep
}

// checkQEMUConf reports the mode qemu.conf puts the hook in. Both are
// valid; cooperative is recommended because libvirt's own labelling
// covers what happens during the run (hot-plug, media change, snapshots,
// block jobs, transient disks), while the hook's journal keeps the true
// original owners that libvirt loses or never knew.
func checkQEMUConf(rep *Report, env Env) {
	q := env.QEMU
	rep.RememberOwner = q.RememberOwnerEnabled()
	remember := "0"
	if rep.RememberOwner {
		remember = "1"
	}
	rep.Mode = string(q.Mode())
	if q.Mode() == config.Cooperative {
		rep.add(Finding{"mode", StatusOK,
			"cooperative (recommended; dynamic_ownership = 1, remember_owner = " + remember + "): libvirt's DAC driver labels files during the run, so hot-plug, media change, snapshots, block jobs and transient disks work; the hook records the true original owners at prepare and puts back what libvirt restores wrongly at release", ""})
	} else {
		rep.add(Finding{"mode", StatusOK,
			"strict (dynamic_ownership = 0): only the hook changes owners; a disk hot-plugged or a medium changed while the domain runs needs `libvirt-dac-hook grant DOMAIN PATH...` first, and transient disks are refused; cooperative mode is recommended: `dynamic_ownership = 1` in " + q.Path + ", then restart libvirtd",
			"for cooperative mode (recommended) set `dynamic_ownership = 1` in " + q.Path + " and restart libvirtd"})
	}
	if env.RunAs.UID == 0 {
		rep.add(Finding{"qemu user", StatusWarn, "QEMU runs as root: the hook has nothing to do", "set user/group in " + q.Path})
	}
}

func checkHookInstalled(rep *Report) {
	var st unix.Stat_t
	if err := unix.Stat(HookPath, &st); err != nil {
		rep.add(Finding{"hook installed", StatusProblem, HookPath + ": " + err.Error(), "run `make install` or install the package"})
		return
	}
	if st.Mode&0o111 == 0 {
		rep.add(Finding{"hook installed", StatusProblem, HookPath + " is not executable", "chmod 0755 " + HookPath})
		return
	}
	b, err := os.ReadFile(HookPath)
	if err != nil || !strings.Contains(string(b), version.Marker) {
		rep.add(Finding{"hook installed", StatusProblem, HookPath + " is not libvirt-dac-hook", "move it into " + HookPath + ".d/ and install libvirt-dac-hook"})
		return
	}
	rep.add(Finding{"hook installed", StatusOK, HookPath, ""})
	pid, start, ok := libvirtdStart()
	if !ok {
		rep.add(Finding{"hook seen by libvirtd", StatusWarn, "no running libvirtd or virtqemud found", "start libvirtd"})
		return
	}
	changed := time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec))
	if hookDir, err := os.Stat(filepath.Dir(HookPath)); err == nil && hookDir.ModTime().After(changed) {
		changed = hookDir.ModTime()
	}
	if changed.After(start) {
		rep.add(Finding{"hook seen by libvirtd", StatusProblem, fmt.Sprintf("the hook changed at %s, after libvirtd (pid %d) started at %s: libvirtd only looks for hooks when it starts", changed.Format(time.RFC3339), pid, start.Format(time.RFC3339)), "restart libvirtd (running VMs keep running)"})
		return
	}
	rep.add(Finding{"hook seen by libvirtd", StatusOK, fmt.Sprintf("libvirtd (pid %d) started after the hook was installed", pid), ""})
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
func checkStateDirs(rep *Report, env Env) {
	want := env.RunAs
	gids := append([]uint32{want.GID}, want.Groups...)
	for _, d := range StateDirs {
		h, err := owner.Open(d)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				rep.add(Finding{"state dir " + d, StatusWarn, err.Error(), ""})
			}
			continue
		}
		uid, gid := h.Owner()
		searchable := false
		if a, err := acl.Get(h.Fd(), h.Stat.Mode); err == nil {
			searchable = a.Allowed(uid, gid, want.UID, gids, acl.Exec)
		}
		status, detail := StatusOK, fmt.Sprintf("owned by %d:%d, searchable by QEMU", uid, gid)
		switch {
		case !searchable:
			status, detail = StatusProblem, fmt.Sprintf("owned by %d:%d, mode %o: QEMU (%s) cannot search it", uid, gid, h.Stat.Mode&0o7777, want)
		case uid != want.UID && uid != 0:
			status, detail = StatusWarn, fmt.Sprintf("owned by uid %d, not QEMU's %s: was `user` changed in qemu.conf?", uid, want)
		}
		if status != StatusOK && env.Fix {
			if err := fixStateDir(env, h, want); err != nil {
				detail += "; fix failed: " + err.Error()
			} else {
				status, detail = StatusOK, fmt.Sprintf("fixed: was %d:%d, now %d:%d", uid, gid, want.UID, want.GID)
			}
		}
		fixText := ""
		if status != StatusOK {
			fixText = fmt.Sprintf("libvirt-dac-hook doctor --fix (chown %d:%d %s)", want.UID, want.GID, d)
		}
		rep.add(Finding{"state dir " + d, status, detail, fixText})
		_ = h.Close() // O_PATH: nothing written through it
	}
}

// fixStateDir gives a libvirt state directory to QEMU's user through the
// handle doctor judged, after the same policy checks as every chown the
// hook makes (protected paths, type), and logs the change like one.
func fixStateDir(env Env, h *owner.Handle, want config.Identity) error {
	if err := env.Plan.Policy.Check(h, owner.Want{Types: domain.TypeDir}); err != nil {
		return err
	}
	uid, gid := h.Owner()
	if err := h.Chown(want.UID, want.GID); err != nil {
		return err
	}
	env.Log.WithFields(logrus.Fields{"domain": "", "op": "doctor-fix", "path": h.Path,
		"from": fmt.Sprintf("%d:%d", uid, gid), "to": fmt.Sprintf("%d:%d", want.UID, want.GID)}).Info("chown")
	return nil
}

// CheckDomain adds to rep whether QEMU will be able to open every
// resource of domain d after prepare: the plan as `plan` shows it, each
// file judged by its permissions, filesystem and mount.
func (r *Report) CheckDomain(env Env, d *domain.Domain) {
	r.Domain = d.Name
	penv := env.Plan
	penv.Tolerant = true
	p, err := plan.Build(d, penv)
	if err != nil {
		r.add(Finding{"domain " + d.Name, StatusProblem, err.Error(), ""})
		return
	}
	defer p.Close()
	for _, n := range p.Notes {
		r.add(Finding{"domain " + d.Name, StatusWarn, n, ""})
	}
	for _, st := range p.Steps {
		v := Resource{Path: st.Path, Kind: st.Kind, From: st.From, Action: string(st.Action), ReadOnly: st.ReadOnly, Status: StatusOK}
		switch {
		case st.Action == plan.Error:
			v.Status, v.Detail = StatusProblem, st.Reason
		case st.Action == plan.SearchACL:
			v.Read, v.Write = false, false
			v.Detail = st.Reason + " at prepare"
		case st.Handle != nil:
			inspect(&v, st, env.RunAs)
		default:
			v.Detail = st.Reason
		}
		r.count(v.Status)
		r.Resources = append(r.Resources, v)
	}
}

// inspect judges one resource as QEMU will see it after prepare.
func inspect(v *Resource, st *plan.Step, runAs config.Identity) {
	h := st.Handle
	uid, gid := h.Owner()
	if st.Action == plan.Chown && st.Target != nil {
		uid, gid = st.Target.UID, st.Target.GID
	}
	target := runAs
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
			v.Status, v.Detail = StatusProblem, "on "+v.FSType+", which has no file owners: chown cannot work; move the image or mount it with uid=/gid= for QEMU's user"
			return
		}
		if owner.FSShared(int64(sf.Type)) && uid == 65534 {
			v.Detail = "on a network filesystem and owned by nobody: root squash likely stops the hook's chown; export with no_root_squash or give the file to QEMU's user on the server"
			v.Status = StatusProblem
		}
	}
	v.ACLs = aclSupported(filepath.Dir(h.Path))
	switch {
	case !v.Read:
		v.Status, v.Detail = StatusProblem, "QEMU cannot read it: the owner has no read permission in its mode"
	case !v.Write && !st.ReadOnly && !domain.Kind(st.Kind).ForcedReadOnly() && !domain.Kind(st.Kind).BootLoaded():
		v.Status, v.Detail = StatusProblem, "QEMU cannot write it, but it is not a read-only disk"
	case v.RO && !st.ReadOnly && !domain.Kind(st.Kind).ForcedReadOnly():
		v.Status, v.Detail = StatusProblem, "on a read-only mount, but QEMU opens it for writing"
	}
	if v.Status == StatusOK && st.Action == plan.Chown && v.Detail == "" {
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

// Summary is doctor's last line: it counts what the lines above say.
func (r *Report) Summary() string {
	return plural(r.Problems, "problem") + ", " + plural(r.Warnings, "warning")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// checkWatcher reports, in cooperative mode, whether a watcher answers:
// without one, files libvirt labels during a run keep the owner it
// leaves them.
func checkWatcher(rep *Report, env Env) {
	if env.QEMU.Mode() != config.Cooperative || !env.Hook.LiveWatch {
		return
	}
	if err := watch.Ping(env.Hook.StateDir, watcherPing); err != nil {
		rep.add(Finding{"watcher", StatusWarn, err.Error() + ": files libvirt labels during a run keep the owner libvirt leaves them",
			"systemctl enable --now libvirt-dac-hook-watch (without systemd: run `libvirt-dac-hook watch` beside libvirtd)"})
		return
	}
	rep.add(Finding{"watcher", StatusOK, "answers on " + filepath.Join(env.Hook.StateDir, watch.SocketName), ""})
}
