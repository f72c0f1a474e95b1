package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/version"
)

var errHelpShown = errors.New("help shown")

func newFlags(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	errOut := &trackingWriter{w: e.stderr}
	fs.SetOutput(errOut)
	fs.Usage = func() {
		// flag calls Usage for -h/--help and, after printing the error,
		// for a bad flag: help goes to stdout, usage after an error to
		// stderr, so that stdout (which scripts parse) stays clean.
		w := e.stdout
		if errOut.written {
			w = e.stderr
		}
		out := &printer{w: w}
		out.printf("Usage: libvirt-dac-hook %s\n\n", synopsis)
		fs.SetOutput(w)
		fs.PrintDefaults()
		out.printf("\n%s", exitHelp)
		fs.SetOutput(errOut)
	}
	return fs
}

// trackingWriter remembers whether anything was written through it.
type trackingWriter struct {
	w       io.Writer
	written bool
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	t.written = true
	return t.w.Write(p)
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		return withCode(ExitUsage, err)
	}
	return nil
}

// readInput reads a domain XML from a file argument or stdin ("-" or none).
func readInput(e *env, args []string) ([]byte, error) {
	if len(args) > 1 {
		return nil, withCode(ExitUsage, fmt.Errorf("expected one input file, got %d", len(args)))
	}
	if len(args) == 0 || args[0] == "-" {
		b, err := readXML(e.stdin)
		return b, withCode(ExitInput, err)
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, withCode(ExitInput, err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	b, err := readXML(f)
	if err != nil {
		return nil, withCode(ExitInput, fmt.Errorf("%s: %w", args[0], err))
	}
	return b, nil
}

func cmdPlan(e *env, args []string) error {
	fs := newFlags(e, "plan", "plan [--json] [--op prepare|release] [--as USER:GROUP] [FILE|-]\n\nShows what the hook would do for a domain XML, changing nothing.")
	asJSON := fs.Bool("json", false, "print JSON (domain, target, resources[] with path, kind, from, action, reason, current, target)")
	op := fs.String("op", "prepare", "operation to show: prepare, or release (what the journal would give back)")
	as := fs.String("as", "", "plan as if QEMU ran as USER:GROUP (names or +N ids), e.g. on a machine without qemu.conf's accounts")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// A usage error is reported before stdin is read.
	if *op != "prepare" && *op != "release" {
		return withCode(ExitUsage, fmt.Errorf("--op must be prepare or release, not %q", *op))
	}
	xml, err := readInput(e, fs.Args())
	if err != nil {
		return err
	}
	d, err := domain.Parse(xml)
	if err != nil {
		return withCode(ExitInput, err)
	}
	// What prepare would say first.
	if err := domain.CheckName(d.Name); err != nil {
		return withCode(ExitInput, err)
	}
	s, err := loadSetup(e, false)
	if err != nil {
		return err
	}
	defer s.Close()
	if *op == "release" {
		return planRelease(e, s, d.Name, *asJSON)
	}
	if *as != "" {
		id, err := config.ParseLabel(*as)
		if err != nil {
			return withCode(ExitUsage, fmt.Errorf("--as: %w", err))
		}
		s.runAs = id
	} else if _, err := s.identity(); err != nil {
		return withCode(ExitConfig, fmt.Errorf("%w (on a machine without that account, say who QEMU runs as with --as +UID:+GID)", err))
	}
	p, err := plan.Build(d, s.planEnv(true))
	if err != nil {
		return err
	}
	defer p.Close()
	markWho(p, s.qemu.Mode())
	if *asJSON {
		return writeJSON(e.stdout, p)
	}
	return printPlan(e.stdout, p, s)
}

// markWho fills in who changes each file's owner in mode.
func markWho(p *plan.Plan, mode config.Mode) {
	p.Mode = string(mode)
	for _, st := range p.Steps {
		switch {
		case st.Action == plan.SearchACL:
			st.By = "hook"
		case st.Action != plan.Chown && st.Action != plan.Keep:
		case mode == config.Cooperative:
			st.By = "hook+libvirt"
		default:
			st.By = "hook"
		}
	}
}

// modeNotes says in a line what the mode means for the files of a plan.
var modeNotes = map[config.Mode]string{
	config.Cooperative: "cooperative (libvirt's dynamic_ownership is on): the hook checks and records each file and gives it to QEMU first, libvirt labels it too and labels what live operations bring in; at release the hook gives back every owner libvirt leaves wrong",
	config.Strict:      "strict (dynamic_ownership = 0): only the hook changes owners; hot-plugged files need `libvirt-dac-hook grant DOMAIN PATH` first",
}

func printPlan(w io.Writer, p *plan.Plan, s *setup) error {
	out := &printer{w: w}
	out.printf("domain %s", p.Domain)
	if p.Target != nil {
		out.printf(": QEMU runs as %s", p.Target)
	}
	out.printf("\nmode: %s\n", modeNotes[s.qemu.Mode()])
	tw := &printer{w: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	tw.println("ACTION\tBY\tKIND\tCURRENT\tTARGET\tPATH\tFROM\tNOTE")
	for _, st := range p.Steps {
		cur, tgt := "-", "-"
		if st.Current != nil {
			cur = st.Current.String()
		}
		if st.Target != nil && st.Action != plan.SearchACL {
			tgt = st.Target.String()
		}
		path := st.Path
		if path == "" {
			path = "-"
		}
		note := st.Reason
		if st.Action == plan.Keep {
			note = ""
		}
		by := st.By
		if by == "" {
			by = "-"
		}
		tw.printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Action, by, st.Kind, cur, tgt, path, st.From, note)
	}
	if err := tw.flush(); err != nil {
		return err
	}
	for _, n := range p.Notes {
		out.printf("note: %s\n", n)
	}
	if s.hook.DryRun {
		out.println("note: dry_run is on: hook mode only logs what it would do")
	}
	return out.flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// planRelease prints what release would do for the domain, decided by
// the same code as the real release.
func planRelease(e *env, s *setup, name string, asJSON bool) error {
	st, err := loadState(s, "")
	if err != nil {
		return err
	}
	r, err := s.runner()
	if err != nil {
		return err
	}
	ds := r.PlanRelease(st, name, apply.ReasonNone)
	if ds == nil {
		ds = []apply.Decision{}
	}
	if s.qemu.Mode() == config.Cooperative {
		rec, err := inventory.Load(s.hook.StateDir, name)
		if err != nil {
			return withCode(ExitState, err)
		}
		live, err := r.PlanInventory(rec, st)
		if err != nil {
			return err
		}
		ds = append(ds, live...)
	}
	if asJSON {
		return writeJSON(e.stdout, struct {
			Domain    string           `json:"domain"`
			Resources []apply.Decision `json:"resources"`
		}{name, ds})
	}
	if _, err := fmt.Fprintf(e.stdout, "domain %s: release gives back\n", name); err != nil {
		return err
	}
	tw := &printer{w: tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)}
	tw.println("ACTION\tKIND\tCURRENT\tTARGET\tPATH\tREASON")
	for _, d := range ds {
		cur := "-"
		if d.Current != nil {
			cur = d.Current.String()
		}
		why := d.Reason
		if d.Perms != "" {
			// The mode and ACL QEMU's run changed go back too.
			why = strings.TrimPrefix(why+"; ", "; ") + "perms: " + d.Perms
		}
		tw.printf("%s\t%s\t%s\t%s\t%s\t%s\n", d.Verdict, d.Kind, cur, d.To, d.Path, why)
	}
	return tw.flush()
}

func loadState(s *setup, file string) (*journal.State, error) {
	if file != "" {
		st, err := journal.LoadFile(file)
		return st, withCode(ExitState, err)
	}
	p := s.hook.StateDir + "/state.json"
	st, err := journal.LoadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return &journal.State{Version: journal.FormatVersion}, nil
	}
	return st, withCode(ExitState, err)
}

// statusEntry is one line of `status`.
type statusEntry struct {
	*journal.Entry
	Stale bool `json:"stale"`
}

func cmdStatus(e *env, args []string) error {
	fs := newFlags(e, "status", "status [--json] [--state-file FILE]\n\nShows every file the hook holds, its original owner and the domains holding it.\nStale records (from an earlier boot: no release will come) are marked; `restore --stale` gives them back.")
	asJSON := fs.Bool("json", false, "print JSON")
	file := fs.String("state-file", "", "read this state file (e.g. one kept aside as damaged) instead of the state directory's")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return withCode(ExitUsage, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	s, err := loadSetup(e, false)
	if err != nil {
		return err
	}
	defer s.Close()
	st, err := loadState(s, *file)
	if err != nil {
		return err
	}
	boot, err := journal.CurrentBootID()
	if err != nil {
		return err
	}
	all := st.All()
	entries := make([]statusEntry, 0, len(all))
	stale := 0
	for _, en := range all {
		se := statusEntry{Entry: en, Stale: len(en.LiveHolders(boot)) == 0}
		if se.Stale {
			stale++
		}
		entries = append(entries, se)
	}
	cs, cerrs := loadClusterStatus(s)
	me := journal.ReadHostID(s.hook.StateDir)
	if *asJSON {
		damaged := make([]string, 0, len(cerrs))
		for _, err := range cerrs {
			damaged = append(damaged, err.Error())
		}
		lab, err := labelledStatus(s, *file)
		if err != nil {
			return err
		}
		return writeJSON(e.stdout, struct {
			StateDir string          `json:"state_dir"`
			BootID   string          `json:"boot_id"`
			HostID   string          `json:"host_id"`
			Entries  []statusEntry   `json:"entries"`
			Labelled []labelledEntry `json:"labelled,omitempty"`
			Cluster  []clusterStatus `json:"cluster"`
			Damaged  []string        `json:"cluster_damaged"`
		}{s.hook.StateDir, boot, me, entries, lab, cs, damaged})
	}
	if err := printStatus(e.stdout, s.hook.StateDir, entries, stale, boot); err != nil {
		return err
	}
	if err := printClusterStatus(e.stdout, cs, cerrs, me, boot); err != nil {
		return err
	}
	return printLabelled(e, s, *file)
}

func printStatus(w io.Writer, stateDir string, entries []statusEntry, stale int, boot string) error {
	out := &printer{w: w}
	if len(entries) == 0 {
		out.printf("nothing held (state in %s)\n", stateDir)
		return out.flush()
	}
	tw := &printer{w: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	tw.println("PATH\tORIGINAL\tHELD AS\tHOLDERS")
	for _, se := range entries {
		var hs []string
		for _, h := range se.Holders {
			n := h.Domain
			if h.BootID != boot {
				n += " (earlier boot)"
			}
			hs = append(hs, n)
		}
		holders := strings.Join(hs, ", ")
		if len(hs) == 0 {
			holders = "(none: restore pending)"
		}
		what := fmt.Sprintf("%d:%d", se.TargetUID, se.TargetGID)
		if se.ACL != nil {
			what = fmt.Sprintf("acl user:%d:--x", se.TargetUID)
		}
		tw.printf("%s\t%d:%d\t%s\t%s\n", se.Path, se.UID, se.GID, what, holders)
	}
	if err := tw.flush(); err != nil {
		return err
	}
	if stale > 0 {
		out.printf("%d stale record(s): no domain of this boot holds them; `libvirt-dac-hook restore --stale` gives them back\n", stale)
	}
	return out.flush()
}

func cmdRestore(e *env, args []string) error {
	fs := newFlags(e, "restore", "restore (--stale | --domain NAME | --all | --state-file FILE)\n\nGives back recorded original owners now, without waiting for libvirt's release.")
	stale := fs.Bool("stale", false, "restore records no domain of this boot holds (after a host crash)")
	dom := fs.String("domain", "", "restore everything domain NAME holds (after a lost release)")
	all := fs.Bool("all", false, "restore everything (only when no VM using these files runs)")
	file := fs.String("state-file", "", "restore everything a state file kept aside lists (e.g. state.db.damaged-*), then mark it restored")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	n := 0
	for _, b := range []bool{*stale, *dom != "", *all, *file != ""} {
		if b {
			n++
		}
	}
	if n != 1 || fs.NArg() > 0 {
		return withCode(ExitUsage, errors.New("give exactly one of --stale, --domain NAME, --all, --state-file FILE"))
	}
	s, r, err := byHand(e)
	if err != nil {
		return err
	}
	defer s.Close()
	if *file != "" {
		return r.RestoreFile(*file)
	}
	return r.Recover(apply.Selector{All: *all, Stale: *stale, Domain: *dom}, "restore")
}

func cmdVersion(e *env, args []string) error {
	fs := newFlags(e, "version", "version [--marker]")
	marker := fs.Bool("marker", false, "print the marker installers look for to recognise this binary")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *marker {
		_, err := fmt.Fprintln(e.stdout, version.Marker)
		return err
	}
	_, err := fmt.Fprintf(e.stdout, "libvirt-dac-hook %s\n", version.Version)
	return err
}

func cmdHelp(e *env, _ []string) error {
	_, err := fmt.Fprint(e.stdout, usage+exitHelp)
	return err
}
