//go:build e2e

package e2e

// A side-by-side comparison with libvirt's own DAC driver: one domain with
// every kind of host file that works on this machine is started twice,
// first with libvirt's own DAC driver doing the chowning (dynamic_ownership = 1, the hook in dry_run) and
// then with the hook doing it (dynamic_ownership = 0, the harness's normal
// state). Whatever libvirt's driver gives QEMU, the hook must give QEMU too;
// after destroy the hook must have given everything back, which libvirt's
// driver is known not to do for read-only and backing images (and, with
// remember_owner = 0 as here, it gives the rest to root, not the owner).
//
// File chardevs are opened by virtlogd as root and passed to QEMU as an fd:
// neither libvirt's driver nor the hook labels them. Without append='on'
// virtlogd deletes and recreates the file (root:root 0600), so that file is
// reported, not checked, after destroy.
//
// Owners are read both on the host and as QEMU sees them, through
// /proc/<qemu pid>/root: with libvirt's default mount namespace, libvirt
// labels device nodes in QEMU's private /dev only, and the host node keeps
// its owner.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// sbsFile is one host file QEMU may open, with what each phase saw.
type sbsFile struct {
	path string
	what string // how the domain uses it

	libvirtRun, libvirtAfter       ownerView
	hookBefore, hookRun, hookAfter ownerView
	wouldChown                     bool   // the dry-run hook logged "would chown" in phase 1
	held                           bool   // the hook's journal held it while the domain ran
	planAction, planReason         string // `plan --json` in phase 2
}

// ownerView is a file's owner on the host and, while QEMU runs, in QEMU's
// mount namespace.
type ownerView struct {
	host, qemu       owner
	hostErr, qemuErr error
	mode             fs.FileMode
	ino              uint64 // on the host
	birth            int64  // statx btime (ns) on the host: with ino, which inode
	running          bool   // qemu is set
}

// labelled reports whether QEMU saw the file as owned by q.
func (v ownerView) labelled(q owner) bool {
	if v.running {
		return v.qemuErr == nil && v.qemu == q
	}
	return v.hostErr == nil && v.host == q
}

func statOwner(p string) (owner, fs.FileMode, uint64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return owner{}, 0, 0, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return owner{int(st.Uid), int(st.Gid)}, modeBits(fi), st.Ino, nil
}

// view reads p's owner on the host and, when pid > 0, through QEMU's root.
func view(p string, pid int) ownerView {
	var v ownerView
	v.host, v.mode, v.ino, v.hostErr = statOwner(p)
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_BTIME|unix.STATX_INO, &stx); err == nil && stx.Mask&unix.STATX_BTIME != 0 {
		v.birth = stx.Btime.Sec*1e9 + int64(stx.Btime.Nsec)
	}
	if pid > 0 {
		v.running = true
		v.qemu, _, _, v.qemuErr = statOwner(filepath.Join("/proc", strconv.Itoa(pid), "root", p))
	}
	return v
}

// slicTable is a minimal ACPI table (the 36-byte header only) with a valid
// checksum: QEMU's -acpitable file= takes the file as a whole table.
func slicTable() []byte {
	var b bytes.Buffer
	b.WriteString("SLIC")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36))
	b.WriteByte(1) // revision
	b.WriteByte(0) // checksum, set below
	b.WriteString("DACHK ")
	b.WriteString("DACHOOK ")
	_ = binary.Write(&b, binary.LittleEndian, uint32(1))
	b.WriteString("DACH")
	_ = binary.Write(&b, binary.LittleEndian, uint32(1))
	t := b.Bytes()
	var sum byte
	for _, c := range t {
		sum += c
	}
	t[9] = -sum
	return t
}

// hostMode switches the host between libvirt's own DAC driver (with the
// hook only logging) and the harness's normal state (the hook chowning).
func (h *harness) hostMode(libvirtDAC bool) error {
	if libvirtDAC {
		return h.switchMode(ownershipMode{name: "libvirt-dac-dry-run", dynamicOwnership: true}, true)
	}
	return h.switchMode(strictMode, false)
}

// wouldChown returns the paths the dry-run hook logged it would chown for
// domain.
func wouldChown(logFile, domain string) (map[string]bool, error) {
	data, err := os.ReadFile(logFile)
	if err != nil {
		return nil, fmt.Errorf("read hook log: %w", err)
	}
	paths := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "would chown") || !strings.Contains(line, "domain="+domain+" ") {
			continue
		}
		if p := logField(line, "path"); p != "" {
			paths[p] = true
		}
	}
	return paths, nil
}

// logField reads key=value or key="quoted value" from a logrus text line.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	rest := line[i+len(key)+2:]
	if strings.HasPrefix(rest, `"`) {
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			if s, err := strconv.Unquote(q); err == nil {
				return s
			}
		}
		return ""
	}
	v, _, _ := strings.Cut(rest, " ")
	return v
}

// heldBy returns the paths the hook's journal holds for domain.
func heldBy(t *testing.T, domain string) []string {
	t.Helper()
	out, err := e2e.host.hookCommand(context.Background(), "status", "--json").Output()
	if err != nil {
		t.Fatalf("%s status --json: %v", hookPath, err)
	}
	var st struct {
		Entries []struct {
			Path    string `json:"path"`
			Holders []struct {
				Domain string `json:"domain"`
			} `json:"holders"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("decode status --json: %v: %s", err, out)
	}
	var held []string
	for _, e := range st.Entries {
		for _, hd := range e.Holders {
			if hd.Domain == domain {
				held = append(held, e.Path)
			}
		}
	}
	return held
}

// drainConns waits briefly for QEMU's connection to the serial socket and
// reports whether one came; it closes what it takes.
func drainConns(conns <-chan net.Conn, wait time.Duration) bool {
	got := false
	deadline := time.After(wait)
	for {
		select {
		case c := <-conns:
			c.Close()
			got = true
		case <-deadline:
			return got
		}
		if got {
			// Anything else queued is taken too, without waiting.
			for {
				select {
				case c := <-conns:
					c.Close()
				default:
					return true
				}
			}
		}
	}
}

// TestSideBySideWithLibvirtDAC: every file libvirt's own DAC driver gives
// QEMU, the hook gives QEMU too, and after destroy the hook has given every
// file back to its owner (libvirt's driver may not: printed, not asserted).
func TestSideBySideWithLibvirtDAC(t *testing.T) {
	f := newFixture(t)
	h := f.h
	q, alice := h.qemu.owner(), h.alice.owner()
	const mode = 0o600

	var files []*sbsFile
	add := func(p, what string) string {
		files = append(files, &sbsFile{path: p, what: what})
		return p
	}
	file := func(name string, data []byte, what string) string {
		return add(f.file(name, data, alice, mode), what)
	}
	d := domainSpec{Name: domainPrefix + "sidebyside", MemoryMiB: 128}
	var overlay, raw, cdrom, blockDev, pipe, sock, serialFile, serialAppend string
	base := add(f.image("base.qcow2", "qcow2", "16M", "", alice, mode), "qcow2 backing (header only)")
	overlay = add(f.image("overlay.qcow2", "qcow2", "", base, alice, mode), "qcow2 overlay disk")
	raw = add(f.image("data.raw", "raw", "8M", "", alice, mode), "raw disk")
	cdrom = add(f.image("cdrom.iso", "raw", "1M", "", alice, mode), "readonly cdrom")
	blockDev = add(f.loop(alice, mode), "loop block device")
	d.OS.Kernel = file("kernel.mb", multibootKernel(), "direct-boot kernel")
	d.OS.Initrd = file("initrd.img", bytes.Repeat([]byte("initrd\n"), 512), "initrd")
	d.OS.SLIC = file("slic.dat", slicTable(), "ACPI SLIC table")
	d.FwCfg = file("fwcfg.bin", []byte("dachook fw_cfg blob\n"), "fw_cfg blob")
	d.NVDIMM = file("nvdimm.img", make([]byte, 4<<20), "nvdimm backing")
	pipe = filepath.Join(f.dir, "serial-pipe")
	for _, ext := range []string{".in", ".out"} {
		p := pipe + ext
		if err := syscall.Mkfifo(p, mode); err != nil {
			t.Fatalf("mkfifo %s: %v", p, err)
		}
		setOwner(t, p, alice, mode)
		add(p, "pipe serial "+ext)
	}
	sock = add(filepath.Join(f.dir, "serial.sock"), "unix serial (connect)")
	conns := f.listenUnix(sock, alice, mode)
	serialFile = file("serial.log", nil, "file serial (virtlogd)")
	serialAppend = file("serial-append.log", nil, "file serial append=on (virtlogd)")
	uefi := true
	ovmfCode, ovmfVars := h.host.ovmf()
	for _, p := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(h.host.path(p)); err != nil {
			uefi = false
			t.Logf("no UEFI NVRAM in this comparison: %v (install the ovmf package)", err)
		}
	}
	if uefi {
		vars, err := os.ReadFile(h.host.path(ovmfVars))
		if err != nil {
			t.Fatalf("read %s: %v", ovmfVars, err)
		}
		d.OS.Loader = ovmfCode
		d.OS.NVRAM = file("vm_VARS.fd", vars, "UEFI NVRAM")
		if h.host.lv.root == "" {
			// The table reads owners at the machine's paths, where the
			// firmware of a host with a root of its own is not
			// (TestNVRAM checks it is left alone on every host).
			add(ovmfCode, "UEFI loader (root's, read-only)")
		}
	}
	d.OS.Cmdline = "console=ttyS0"
	d.Disks = []disk{
		fileDisk("qcow2", overlay, "vda"),
		fileDisk("raw", raw, "vdb"),
		{Type: "block", Format: "raw", Source: blockDev, Target: "vdc"},
		{Device: "cdrom", Format: "raw", Source: cdrom, Target: "hdc", Bus: "ide", ReadOnly: true},
	}
	d.Serials = []serial{{Type: "pipe", Path: pipe}, {Type: "unix", Path: sock}, {Type: "file", Path: serialFile}, {Type: "file", Path: serialAppend, Append: true}}
	orig := map[string]ownerView{}
	for _, sf := range files {
		orig[sf.path] = view(sf.path, 0)
	}

	xmlPath := f.writeXML(d.Name, d.xml())
	start := func(phase string) int {
		t.Helper()
		out, err := virsh(2*time.Minute, "create", xmlPath)
		if err != nil {
			t.Errorf("%s: virsh create %s: %v (libvirt's error below)", phase, d.Name, err)
			logBlock(t, "libvirt error", out)
			logBlock(t, "domain XML", d.xml())
			f.logPlan(xmlPath)
			h.diagnose(t, d.Name)
			t.FailNow()
		}
		t.Cleanup(func() { _, _ = virsh(time.Minute, "destroy", d.Name) })
		return qemuPID(t, d.Name)
	}
	resetOwners := func() {
		t.Helper()
		for _, sf := range files {
			o := orig[sf.path]
			if now := view(sf.path, 0); now.host != o.host || now.mode != o.mode {
				setOwner(t, sf.path, o.host, o.mode)
			}
		}
	}

	// Phase 1: libvirt's driver chowns; the hook only logs.
	switched := false
	t.Cleanup(func() {
		if !switched {
			return
		}
		if err := h.hostMode(false); err != nil {
			t.Errorf("put the host back to dynamic_ownership = 0 and the hook on: %v", err)
		}
	})
	switched = true
	if err := h.hostMode(true); err != nil {
		t.Fatalf("switch to libvirt's DAC driver: %v", err)
	}
	pid := start("libvirt's DAC driver")
	for _, sf := range files {
		sf.libvirtRun = view(sf.path, pid)
	}
	if held := heldBy(t, d.Name); len(held) > 0 {
		t.Errorf("with dry_run = 1 the hook's journal holds %v for %s; a dry run must record nothing", held, d.Name)
	}
	libvirtSock := drainConns(conns, 5*time.Second)
	f.destroy(d.Name)
	for _, sf := range files {
		sf.libvirtAfter = view(sf.path, 0)
	}
	would, err := wouldChown(h.logFile, d.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, sf := range files {
		sf.wouldChown = would[sf.path]
	}
	if len(would) == 0 {
		t.Errorf("the dry-run hook logged no \"would chown\" for %s: was it called at all?", d.Name)
		h.diagnose(t, d.Name)
	}
	for _, sf := range files {
		if sf.path == raw && !sf.libvirtRun.labelled(q) {
			t.Fatalf("libvirt's DAC driver did not give the raw disk %s to QEMU (QEMU saw %s): is dynamic_ownership = 1 in effect?", raw, sf.libvirtRun.qemu)
		}
	}

	// Phase 2: the harness's normal state; the hook chowns.
	resetOwners()
	if err := h.hostMode(false); err != nil {
		t.Fatalf("switch back to the hook: %v", err)
	}
	switched = false
	planOut, err := h.host.hookCommand(context.Background(), "plan", "--json", xmlPath).Output()
	if err != nil {
		t.Errorf("%s plan --json %s: %v", hookPath, xmlPath, err)
	}
	var pl struct {
		Resources []struct {
			Path, Kind, Action, Reason string
		} `json:"resources"`
	}
	if err := json.Unmarshal(planOut, &pl); err != nil {
		t.Errorf("decode plan --json: %v: %s", err, planOut)
	}
	for _, r := range pl.Resources {
		for _, sf := range files {
			if sf.path == r.Path {
				sf.planAction, sf.planReason = r.Action, r.Reason
			}
		}
	}
	for _, sf := range files {
		sf.hookBefore = view(sf.path, 0)
	}
	pid = start("the hook")
	for _, sf := range files {
		sf.hookRun = view(sf.path, pid)
	}
	for _, p := range heldBy(t, d.Name) {
		for _, sf := range files {
			if sf.path == p {
				sf.held = true
			}
		}
	}
	hookSock := drainConns(conns, 10*time.Second)
	f.destroy(d.Name)
	for _, sf := range files {
		sf.hookAfter = view(sf.path, 0)
	}

	// The table, then the verdicts.
	name := func(v ownerView, running bool) string {
		o, err := v.host, v.hostErr
		if running {
			o, err = v.qemu, v.qemuErr
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "missing"
			}
			return "error"
		}
		s := h.ownerName(o)
		if running && v.hostErr == nil && v.host != v.qemu {
			s += " (host: " + h.ownerName(v.host) + ")"
		}
		return s
	}
	var tb strings.Builder
	tw := tabwriter.NewWriter(&tb, 0, 4, 2, ' ', 0)
	row := func(format string, args ...any) {
		if _, err := fmt.Fprintf(tw, format, args...); err != nil {
			t.Fatalf("format the side-by-side table: %v", err)
		}
	}
	row("PATH\tWHAT\tLIBVIRT RUNNING\tLIBVIRT AFTER\tHOOK RUNNING\tHOOK AFTER\tHOOK LOG/JOURNAL\tHOOK PLAN\n")
	for _, sf := range files {
		dry := "-"
		if sf.wouldChown {
			dry = "would chown"
		}
		if sf.held {
			dry += ", held"
		}
		pa := sf.planAction
		if pa == "" {
			pa = "(not in plan)"
		}
		if sf.planReason != "" {
			pa += ": " + sf.planReason
		}
		row("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strings.TrimPrefix(sf.path, f.dir+"/"), sf.what,
			name(sf.libvirtRun, true), name(sf.libvirtAfter, false), name(sf.hookRun, true), name(sf.hookAfter, false), dry, pa)
	}
	if err := tw.Flush(); err != nil {
		t.Fatalf("format the side-by-side table: %v", err)
	}
	logBlock(t, fmt.Sprintf("side by side (files in %s; QEMU runs as %s = %s; owners as QEMU sees them while running)", f.dir, h.qemu.name, q), tb.String())
	t.Logf("QEMU connected to the unix serial socket: under libvirt's driver %v, under the hook %v", libvirtSock, hookSock)

	var missed, extra, leftByLibvirt, recreated, nsOnly []string
	for _, sf := range files {
		lv, hk := sf.libvirtRun.labelled(q), sf.hookRun.labelled(q)
		if lv && !hk {
			missed = append(missed, sf.path)
		}
		if hk && !lv {
			extra = append(extra, fmt.Sprintf("%s (%s): %s", sf.path, sf.what, extraReason(sf)))
		}
		if hk && !sf.held {
			t.Errorf("the hook gave %s (%s) to QEMU but its journal did not hold it for %s", sf.path, sf.what, d.Name)
		}
		if v := sf.libvirtRun; v.qemuErr == nil && v.hostErr == nil && v.qemu != v.host {
			nsOnly = append(nsOnly, fmt.Sprintf("%s (%s): QEMU saw %s, the host node stayed %s; after destroy the host node is %s",
				sf.path, sf.what, h.ownerName(v.qemu), h.ownerName(v.host), h.ownerName(sf.libvirtAfter.host)))
		}
		if lv && sf.libvirtAfter.hostErr == nil && sf.libvirtAfter.host != orig[sf.path].host {
			leftByLibvirt = append(leftByLibvirt, fmt.Sprintf("%s (%s): %s", sf.path, sf.what, h.ownerName(sf.libvirtAfter.host)))
		}
		if o := sf.hookBefore; sf.planAction == "skip" && sf.hookAfter.hostErr == nil && (sf.hookAfter.ino != o.ino || sf.hookAfter.birth != o.birth) {
			// Not the hook's file: libvirt replaced it (virtlogd deletes
			// and recreates a file chardev without append='on').
			recreated = append(recreated, fmt.Sprintf("%s (%s): inode %d (born %s) → %d (born %s), now %s %v", sf.path, sf.what, o.ino, time.Unix(0, o.birth).UTC().Format(time.StampMicro), sf.hookAfter.ino, time.Unix(0, sf.hookAfter.birth).UTC().Format(time.StampMicro), h.ownerName(sf.hookAfter.host), sf.hookAfter.mode))
			continue
		}
		if sf.hookAfter.hostErr != nil || sf.hookAfter.host != orig[sf.path].host || sf.hookAfter.mode != orig[sf.path].mode {
			t.Errorf("after destroy under the hook: %s (%s) is %s %v, want %s %v as before", sf.path, sf.what,
				name(sf.hookAfter, false), sf.hookAfter.mode, h.ownerName(orig[sf.path].host), orig[sf.path].mode)
		}
	}
	sort.Strings(missed)
	for _, p := range missed {
		t.Errorf("libvirt's DAC driver gave %s to QEMU but the hook did not", p)
	}
	if len(missed) > 0 {
		h.diagnose(t, d.Name)
	}
	logBlock(t, "labelled by the hook but not by libvirt's DAC driver (not a failure)", strings.Join(extra, "\n"))
	logBlock(t, "left changed by libvirt's DAC driver after destroy (libvirt's known gap, not asserted)", strings.Join(leftByLibvirt, "\n"))
	logBlock(t, "labelled by libvirt's DAC driver only in QEMU's mount namespace", strings.Join(nsOnly, "\n"))
	logBlock(t, "skipped by the hook and replaced by libvirt/virtlogd (a new inode; not asserted)", strings.Join(recreated, "\n"))
}

// extraReason says why the hook labels a file libvirt's driver does not,
// where that is known.
func extraReason(sf *sbsFile) string {
	if strings.HasPrefix(sf.what, "file serial") {
		return "libvirt skips file chardevs opened by virtlogd (chardevStdioLogd)"
	}
	if sf.planReason != "" {
		return "plan: " + sf.planReason
	}
	return "unknown"
}

// ownerName shows an owner by the names the suite uses.
func (h *harness) ownerName(o owner) string {
	switch o {
	case h.qemu.owner():
		return "qemu"
	case h.alice.owner():
		return "alice"
	case h.bob.owner():
		return "bob"
	case owner{0, 0}:
		return "root"
	}
	return o.String()
}
