package plan

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/sysfs"
)

// Action is what prepare does with a step.
type Action string

// Actions.
const (
	Chown Action = "chown" // give the file to the target owner
	Keep  Action = "keep"  // already owned by the target: hold it, change nothing
	Skip  Action = "skip"  // leave alone (Reason says why)
	Error Action = "error" // cannot be done (dry run only; prepare fails instead)
)

// Step is one host file and what prepare does with it.
type Step struct {
	Path     string        `json:"path"`
	Kind     string        `json:"kind"`
	From     string        `json:"from"`
	Action   Action        `json:"action"`
	Reason   string        `json:"reason,omitempty"`
	Current  *owner.UIDGID `json:"current,omitempty"`
	Target   *owner.UIDGID `json:"target,omitempty"`
	ReadOnly bool          `json:"readonly,omitempty"`
	// ACL is the change a SearchACL step makes (computed from the ACL the
	// directory has now; prepare records it before making it).
	ACL    *acl.Change `json:"acl,omitempty"`
	Shared bool        `json:"shareable,omitempty"`
	// By says who changes the file's owner in the mode in effect: "hook",
	// or "hook+libvirt" in cooperative mode, where libvirt's own driver
	// labels it too (and restores it, often wrongly, before the hook's
	// release). Set by the caller, which knows the mode.
	By string `json:"by,omitempty"`

	// HeaderCheck is set on files an image header named: what the owner
	// rule for them assumed. The plan is built without the journal lock,
	// so prepare re-checks it under the lock (OwnerCheck.Judge).
	HeaderCheck *OwnerCheck `json:"-"`

	// LinkOwners, when set, are owners of symlinks on the way to a file
	// QEMU holds already; prepare accepts them only if the journal says
	// they owned the file before the hook gave it to QEMU.
	LinkOwners []uint32 `json:"-"`

	// Header is set when the plan read the file's header for the files it
	// names (backing files, extents): what libvirt and QEMU follow later
	// is only what the plan checked if nobody can rewrite it meanwhile,
	// which prepare makes sure of.
	Header bool `json:"-"`
	// HeaderFormat and HeaderPrint are the format the header was read as
	// and what the read came to (see HeaderPrint).
	HeaderFormat string `json:"-"`
	HeaderPrint  string `json:"-"`

	// Handle is the open file (nil for skipped and failed steps). Prepare
	// changes ownership through it; the plan owns it until Close.
	Handle *owner.Handle `json:"-"`
}

// Plan is everything prepare would do for one domain.
type Plan struct {
	Domain string        `json:"domain"`
	UUID   string        `json:"uuid,omitempty"`
	Target *owner.UIDGID `json:"target,omitempty"`
	Steps  []*Step       `json:"resources"`
	Notes  []string      `json:"notes,omitempty"`
	// Mode is the hook's mode the plan was shown for (set by the caller).
	Mode string `json:"mode,omitempty"`
}

// Env is what building a plan needs from the host and the configuration.
type Env struct {
	Policy       owner.Policy
	Sys          sysfs.Root
	PoolDir      string
	MaxDepth     int
	BackingPaths []string
	// RunAs is who QEMU runs as by default (from qemu.conf).
	RunAs config.Identity
	// ResolveLabel turns a DAC <label> into an owner.
	ResolveLabel func(string) (config.Identity, error)
	// AnyBackingOwner lets image headers name backing files owned by
	// anyone (backing_any_owner); by default they must be owned by root,
	// the target or the owner of the image naming them.
	AnyBackingOwner bool
	// ParentACL lets prepare add user:<uid>:--x ACL entries to directories
	// QEMU cannot search (parent_search_acl); off, such a directory fails
	// prepare with the command that would fix it.
	ParentACL bool
	// StateDirs are libvirt's per-domain state directories for QEMU
	// (/var/lib/libvirt/qemu, ...). A domain whose QEMU user cannot
	// search them (a static DAC label with another uid) gets the same
	// narrow search ACL as image directories, so it can reach its own
	// domain-N-name directory (master key, monitor socket).
	StateDirs []string
	// StdioFile is true when qemu.conf says stdio_handler = "file": QEMU,
	// not virtlogd, opens chardev output files.
	StdioFile bool
	// RecordedOwner looks an inode up in the journal: the owner it had
	// before the hook first gave it to QEMU, if the journal holds it.
	// The owner rule for header-named files judges by that owner, so a
	// file another domain holds (owned by QEMU now) is not taken for
	// QEMU's own. nil means no journal: the current owner counts.
	RecordedOwner func(dev, ino uint64) (uid, gid uint32, ok bool)
	// Tolerant makes problems steps with Action Error instead of failing
	// the whole plan (the dry run and doctor use it).
	Tolerant bool
}

// StepError is a problem with one resource. Its message names the path and
// the XML element so the one-line hook error is enough to act on.
type StepError struct {
	Path string
	From string
	Err  error
}

func (e *StepError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %v", e.From, e.Err)
	}
	return fmt.Sprintf("%s (%s): %v", e.Path, e.From, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Close releases every handle the plan holds.
func (p *Plan) Close() {
	for _, s := range p.Steps {
		if s.Handle != nil {
			s.Handle.Close()
			s.Handle = nil
		}
	}
}

// Build makes the plan for d. Unless env.Tolerant, the first problem fails
// the build (all handles closed) with a *StepError.
func Build(d *domain.Domain, env Env) (*Plan, error) {
	p := &Plan{Domain: d.Name, UUID: d.UUID, Notes: append([]string(nil), d.Notes...)}
	// One sysfs for every reader: the policy's checks (disks below a SCSI
	// generic node, partitions and holders, loop devices) read the tree
	// the lookups read, never the real /sys behind a configured root.
	if env.Policy.SysRoot == "" {
		env.Policy.SysRoot = env.Sys.Sys
	}
	// One look at the host's mounts, swap and loop devices for the
	// whole plan, not one per file.
	pol, err := env.Policy.Snapshot()
	if err != nil {
		return nil, &StepError{From: "host mount table", Err: err}
	}
	env.Policy = pol
	b := &builder{env: env, plan: p, seen: make(map[owner.ID]*Step), dirsDone: make(map[string]bool)}
	if err := b.build(d); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

type builder struct {
	env  Env
	plan *Plan
	seen map[owner.ID]*Step
	// dirsDone holds "uid:dir" pairs whose search permission is settled.
	dirsDone map[string]bool
	// poolDirs are the target directories of libvirt's dir, fs and
	// netfs pools, read once when a header first needs them.
	poolDirs  []string
	poolsRead bool
	// pathBytes counts the path and element text of every step so far.
	pathBytes int
	// domainTarget is the owner for resources without their own label;
	// nil when the domain needs nothing changed.
	domainTarget *owner.UIDGID
	skipAll      string
	// domainGroups are QEMU's groups when a static DAC label, not
	// qemu.conf, names the owner: the label user's own (libvirt runs QEMU
	// with virGetGroupList of the uid it switches to). nil without a label.
	domainGroups []uint32
}

func (b *builder) build(d *domain.Domain) error {
	switch {
	case !d.Relabel:
		b.skipAll = "domain seclabel relabel='no'"
	case d.Label != "":
		id, err := b.env.ResolveLabel(d.Label)
		if err != nil {
			return &StepError{From: "seclabel[model=dac]/label", Err: err}
		}
		b.domainTarget = &owner.UIDGID{UID: id.UID, GID: id.GID}
		// A labelled QEMU gets the label user's groups, not qemu.conf's.
		b.domainGroups = append([]uint32{id.GID}, id.Groups...)
	default:
		b.domainTarget = &owner.UIDGID{UID: b.env.RunAs.UID, GID: b.env.RunAs.GID}
	}
	if b.domainTarget != nil && b.domainTarget.UID == 0 {
		b.skipAll = "QEMU runs as root"
	}
	b.plan.Target = b.domainTarget
	for i := range d.Resources {
		if err := b.resource(&d.Resources[i]); err != nil {
			return err
		}
	}
	return b.stateDirs()
}

// stateDirs makes sure the domain's QEMU user can search libvirt's state
// directories: libvirt creates domain-N-NAME inside them owned by that
// user, but the directories above belong to qemu.conf's user.
func (b *builder) stateDirs() error {
	if b.skipAll != "" || b.domainTarget == nil || b.domainGroups == nil {
		return nil
	}
	gids := b.domainGroups
	for _, d := range b.env.StateDirs {
		if _, err := os.Stat(d); err != nil {
			continue
		}
		st := &Step{Path: filepath.Join(d, "domain-"+b.plan.Domain), From: "libvirt state directory " + d}
		if err := b.parents(st, b.domainTarget.UID, gids); err != nil {
			return err
		}
	}
	return nil
}

// fail records a problem: a step with Action Error when tolerant, else an
// error that aborts the build.
func (b *builder) fail(r *domain.Resource, path string, err error) error {
	se := &StepError{Path: path, From: r.From, Err: err}
	if !b.env.Tolerant {
		return se
	}
	b.plan.Steps = append(b.plan.Steps, &Step{Path: path, Kind: string(r.Kind), From: r.From, Action: Error, Reason: err.Error(), ReadOnly: r.ReadOnly, Shared: r.Shared})
	return nil
}

func (b *builder) skip(r *domain.Resource, path, reason string) {
	b.plan.Steps = append(b.plan.Steps, &Step{Path: path, Kind: string(r.Kind), From: r.From, Action: Skip, Reason: reason, ReadOnly: r.ReadOnly, Shared: r.Shared})
}

func (b *builder) resource(r *domain.Resource) error {
	paths, want, err := b.locate(r)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && (r.Optional || b.skipAll != "" || r.Skip != "") {
			b.skip(r, r.Path, "not present (optional)")
			return nil
		}
		return b.fail(r, r.Path, err)
	}
	for _, path := range paths {
		if err := b.file(r, path, want, 0, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// file adds the step for one path of r, and for images the rest of the
// backing chain below it. given is the path as named (QEMU resolves
// relative backing names against it); headerOf is the image whose header
// named this file, nil when the XML did; visiting holds the chain so far.
func (b *builder) file(r *domain.Resource, given string, want owner.Want, depth int, visiting map[owner.ID]bool, headerOf *Step) error {
	if reason := b.skipReason(r); reason != "" {
		b.skip(r, given, reason)
		return nil
	}
	target, gids, rootLabel, err := b.runAs(r)
	if err != nil {
		return b.fail(r, given, err)
	}
	if rootLabel {
		b.skip(r, given, "its DAC label runs QEMU as root")
		return nil
	}
	h, err := owner.Open(given)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && r.Optional {
			b.skip(r, given, "not present (startupPolicy optional)")
			return nil
		}
		return b.fail(r, given, err)
	}
	linkOwners, hc, err := b.check(h, r, want, target, headerOf)
	if err != nil {
		h.Close()
		return b.fail(r, given, err)
	}
	id := h.ID()
	if visiting[id] {
		h.Close()
		return b.fail(r, given, fmt.Errorf("backing chain loops back to %s", h.Path))
	}
	if prev, ok := b.seen[id]; ok {
		h.Close()
		if prev.Target != nil && *prev.Target != *target {
			return b.fail(r, given, fmt.Errorf("same file as %s (%s) but needs owner %s, not %s", prev.Path, prev.From, target, prev.Target))
		}
		// Same inode reached twice (a base shared by two disks): one step,
		// and its chain was walked the first time.
		return nil
	}
	uid, gid := h.Owner()
	st := &Step{
		Path: h.Path, Kind: string(r.Kind), From: r.From,
		Current: &owner.UIDGID{UID: uid, GID: gid}, Target: target,
		ReadOnly: r.ReadOnly, Shared: r.Shared, Handle: h,
		LinkOwners: linkOwners,
	}
	if uid == target.UID && gid == target.GID {
		st.Action = Keep
		st.Reason = "already owned by the target"
	} else {
		st.Action = Chown
	}
	st.HeaderCheck = hc
	if err := b.countStep(st); err != nil {
		h.Close()
		return b.fail(r, given, err)
	}
	b.seen[id] = st
	b.plan.Steps = append(b.plan.Steps, st)
	if err := b.parents(st, target.UID, gids); err != nil {
		return err
	}
	if r.ProbeBacking || r.Format == "vmdk" {
		st.Header = true
		if visiting == nil {
			visiting = make(map[owner.ID]bool)
		}
		visiting[id] = true
		return b.chain(r, st, given, depth, visiting)
	}
	return nil
}

// skipReason says why every path of r is left alone, "" when none is.
func (b *builder) skipReason(r *domain.Resource) string {
	switch {
	case b.skipAll != "":
		return b.skipAll
	case r.Skip != "":
		return r.Skip
	case r.StdioFileOnly && !b.env.StdioFile:
		return "virtlogd opens it (qemu.conf stdio_handler is not \"file\")"
	}
	return ""
}

// runAs returns the owner r's files get and the groups QEMU holds while
// it opens them: those of r's own DAC label when it has one, else the
// domain's. rootLabel reports a label that runs QEMU as root, for which
// nothing needs changing.
func (b *builder) runAs(r *domain.Resource) (target *owner.UIDGID, gids []uint32, rootLabel bool, err error) {
	if r.Label == "" {
		if b.domainGroups != nil {
			return b.domainTarget, b.domainGroups, false, nil
		}
		return b.domainTarget, append([]uint32{b.env.RunAs.GID}, b.env.RunAs.Groups...), false, nil
	}
	id, err := b.env.ResolveLabel(r.Label)
	if err != nil {
		return nil, nil, false, err
	}
	if id.UID == 0 {
		return nil, nil, true, nil
	}
	return &owner.UIDGID{UID: id.UID, GID: id.GID}, append([]uint32{id.GID}, id.Groups...), false, nil
}

// check applies the owner policy to the file h holds, and the rules for
// header-named files when headerOf is set. It returns the link owners
// admitted pending the journal's word and, for a header-named file, what
// its owner rule assumed: prepare checks both again under its lock.
func (b *builder) check(h *owner.Handle, r *domain.Resource, want owner.Want, target *owner.UIDGID, headerOf *Step) ([]uint32, *OwnerCheck, error) {
	var linkOwners []uint32
	err := b.env.Policy.Check(h, want)
	if errors.Is(err, owner.ErrLinkOwner) && h.Stat.Uid == target.UID {
		// The file is QEMU's already (another domain holds it): whether
		// the link's owner owned it before is in the journal, which
		// prepare checks under its lock. Every other rule applies now.
		w := want
		w.LinkOwners = owner.LinkUIDs(h)
		if err = b.env.Policy.Check(h, w); err == nil {
			linkOwners = w.LinkOwners
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if headerOf == nil {
		return linkOwners, nil, nil
	}
	hc, err := b.checkHeaderNamed(h, headerOf, r.Kind == domain.KindBacking)
	if err != nil {
		return nil, nil, err
	}
	return linkOwners, hc, nil
}
