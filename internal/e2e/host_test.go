//go:build e2e

package e2e

// A host is one libvirt host of the suite: its own virtlogd and libvirtd
// in a private mount namespace, so the machine's libvirt (config, sockets,
// daemons, domains) is never touched. Two hosts can run side by side (the
// migration scenarios need that); each has:
//
//   - /etc/libvirt: a copy of the top-level config files of the machine's
//     /etc/libvirt (no domain, network or pool definitions: the machine's
//     autostart domains must not start here), with our qemu.conf header
//     prepended (virconf keeps the first occurrence of a key), libvirtd.conf
//     with a host_uuid of its own, the hook under test at hooks/qemu and
//     libvirt-dac-hook.conf pointing at this host's state directory.
//   - /run/libvirt: a tmpfs (sockets, pid files, QEMU's runtime files).
//   - /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt: empty copies
//     of the machine's directory trees (owners and modes kept).
//   - the hook's state_dir and log_file in the work dir.
//
// Everything else, the work dir with the scenarios' images above all, is
// the machine's own and so is seen at the same path by every host and by
// the tests; libvirt requires the same image path on both ends of a
// migration. The host's files live under workDir/hosts/NAME, so the tests
// read them without entering the namespace; path() maps a path as the
// daemon sees it to one the tests can open (through /proc/PID/root).
//
// A keeper process (sleep) holds the namespace; the daemons are entered
// into it with nsenter, so libvirtd can be restarted (to read a rewritten
// qemu.conf) without losing /run/libvirt. virsh reaches the daemon through
// the keeper's root: qemu+unix:///system?socket=/proc/PID/root/run/libvirt/libvirt-sock.

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// host is one namespaced libvirt host; see the top of this file.
type host struct {
	name string
	h    *harness
	dir  string // workDir/hosts/NAME: the host's own directories
	uuid string // host_uuid in libvirtd.conf

	// lv is the libvirt the host runs: the machine's, or another
	// distribution's in a root directory that becomes their namespace's root.
	lv libvirtRelease

	etcDir   string // bind-mounted at /etc/libvirt
	stateDir string // the hook's state_dir
	logFile  string // the hook's log_file

	// mode is what qemu.conf and libvirtd are set to now; dryRun whether
	// the hook's config has dry_run = 1.
	mode   ownershipMode
	dryRun bool

	// qemuConfOrig is the qemu.conf our header is prepended to.
	qemuConfOrig []byte
	// extraQemuConf is appended to our header (e.g. migration ports).
	extraQemuConf string

	keeper   *exec.Cmd
	nsID     string // readlink /proc/KEEPER/ns/mnt
	logd     *daemonProc
	libvirtd *daemonProc
	// watch is the hook's watcher of cooperative mode, run beside
	// libvirtd as libvirt-dac-hook-watch.service would run it.
	watch *daemonProc
}

// daemonProc is a daemon run in the foreground as our child, so its exit
// is seen and it never outlives a stop.
type daemonProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// hostDirs are the machine's libvirt directories each host replaces with
// its own. /run/libvirt is a fresh tmpfs instead.
var hostDirs = []string{"/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt"}

// newHost prepares host name's directories and starts its daemons in mode
// m. Stop it with stop.
func (h *harness) newHost(name string, lv libvirtRelease, m ownershipMode, extraQemuConf string) (*host, error) {
	hs := &host{name: name, h: h, lv: lv, dir: filepath.Join(h.workDir, "hosts", name), extraQemuConf: extraQemuConf}
	hs.etcDir = filepath.Join(hs.dir, "etc", "libvirt")
	hs.stateDir = filepath.Join(hs.dir, "state")
	hs.logFile = filepath.Join(hs.dir, "hook.log")
	var err error
	if hs.uuid, err = newUUID(); err != nil {
		return nil, err
	}
	if err := hs.makeDirs(); err != nil {
		return nil, err
	}
	if err := hs.writeConfig(m, false); err != nil {
		return nil, err
	}
	if err := hs.startKeeper(); err != nil {
		return hs, errors.Join(err, hs.stop())
	}
	if err := hs.startDaemons(); err != nil {
		return hs, errors.Join(err, hs.stop())
	}
	return hs, nil
}

// makeDirs builds the host's directories: copies of the machine's
// top-level libvirt config files, empty copies of the state trees, the
// hook's state directory.
func (hs *host) makeDirs() error {
	if err := os.MkdirAll(filepath.Join(hs.dir, "etc"), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", hs.dir, err)
	}
	if err := copyConfigFiles(hs.lv.root+"/etc/libvirt", hs.etcDir); err != nil {
		return err
	}
	for _, d := range []string{"hooks", "qemu"} {
		if err := os.MkdirAll(filepath.Join(hs.etcDir, d), 0o755); err != nil {
			return fmt.Errorf("create %s/%s: %w", hs.etcDir, d, err)
		}
	}
	for _, d := range hostDirs[1:] {
		if err := copyDirTree(hs.lv.root+d, hs.own(d)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(hs.own("/run/libvirt")), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", hs.own("/run/libvirt"), err)
	}
	if err := os.Mkdir(hs.stateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	orig, err := os.ReadFile(hs.lv.root + "/etc/libvirt/qemu.conf")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s/etc/libvirt/qemu.conf: %w", hs.lv.root, err)
	}
	hs.qemuConfOrig = orig
	if err := hs.installHook(); err != nil {
		return err
	}
	return hs.writeLibvirtdConf()
}

// own is where the host keeps its copy of the machine directory d.
func (hs *host) own(d string) string {
	if d == "/etc/libvirt" {
		return hs.etcDir
	}
	return filepath.Join(hs.dir, strings.TrimPrefix(d, "/"))
}

// copyConfigFiles copies the regular files directly in src (not its
// subdirectories, which hold definitions of domains, networks and pools
// that belong to the machine) into dst, keeping modes and owners.
func copyConfigFiles(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return chownLike(dst, fi)
}

// copyDirTree makes dst a tree of empty directories shaped like src, with
// src's owners and modes: libvirt expects e.g. /var/lib/libvirt/qemu to
// be its QEMU user's.
func copyDirTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == src {
				return os.MkdirAll(dst, 0o755)
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		if strings.Count(rel, "/") >= 3 {
			// Deeper are the machine's own domains' and images'
			// directories, which libvirt does not need.
			return fs.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		t := filepath.Join(dst, rel)
		if err := os.MkdirAll(t, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", t, err)
		}
		if err := os.Chmod(t, fi.Mode().Perm()); err != nil {
			return fmt.Errorf("chmod %s: %w", t, err)
		}
		return chownLike(t, fi)
	})
}

func chownLike(p string, fi fs.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	return nil
}

func newUUID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a host uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// writeLibvirtdConf prepends this host's settings to the machine's
// libvirtd.conf: a host_uuid of its own (libvirt refuses to migrate to a
// host with its own uuid) and a log file in its own /var/log/libvirt.
func (hs *host) writeLibvirtdConf() error {
	p := filepath.Join(hs.etcDir, "libvirtd.conf")
	orig, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", p, err)
	}
	head := fmt.Sprintf("# --- prepended by libvirt-dac-hook e2e tests (host %s); first occurrence wins ---\n"+
		"host_uuid = %q\nlog_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\n"+
		"# --- the machine's file follows ---\n", hs.name, hs.uuid)
	return writeFileAtomic(p, append([]byte(head), orig...), 0o644)
}

// installHook puts the hook under test at the host's hooks/qemu: the
// freshly built binary, or with LIBVIRT_DAC_HOOK_E2E_INSTALLED=1 a copy of
// what the machine's /etc/libvirt/hooks/qemu leads to (the installed
// package, tested as it is).
func (hs *host) installHook() error {
	data, err := os.ReadFile(hs.h.hookSrc)
	if err != nil {
		return fmt.Errorf("read hook binary: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(hs.etcDir, "hooks", "qemu"), data, 0o755); err != nil {
		return err
	}
	return hs.installRecorder()
}

// installRecorder adds a script to the host's hooks/qemu.d (libvirt >= 6.5
// runs each after hooks/qemu, with the same arguments) that appends every
// call's arguments to hookCalls: what libvirt passes, as TestHookCalls
// reads it. It reads the domain XML and prints nothing, so the XML that
// "migrate" and "restore" filter stays as it is.
func (hs *host) installRecorder() error {
	d := filepath.Join(hs.etcDir, "hooks", "qemu.d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", d, err)
	}
	script := fmt.Sprintf("#!/bin/sh\n# written by internal/e2e: records the arguments of every hook call\ncat >/dev/null\nprintf '%%s|%%s|%%s|%%s\\n' \"$1\" \"$2\" \"$3\" \"$4\" >>%s\n", shq(hs.hookCalls()))
	return writeFileAtomic(filepath.Join(d, "zz-dachook-e2e-record"), []byte(script), 0o755)
}

// hookCalls is the file installRecorder's script appends to: one line
// per hook call, "DOMAIN|OP|SUBOP|EXTRA".
func (hs *host) hookCalls() string { return filepath.Join(hs.dir, "hook-calls.log") }

// writeConfig writes qemu.conf for mode m and the hook's config (dryRun:
// hook mode only logs). libvirtd reads them when it starts.
func (hs *host) writeConfig(m ownershipMode, dryRun bool) error {
	user, group, _ := strings.Cut(hs.h.qemu.name, ":")
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	head := fmt.Sprintf("# --- prepended by libvirt-dac-hook e2e tests (host %s); first occurrence wins ---\n"+
		"user = %q\ngroup = %q\ndynamic_ownership = %d\nremember_owner = %d\n%s"+
		"# --- the machine's file follows ---\n", hs.name, user, group, b2i(m.dynamicOwnership), b2i(m.rememberOwner), hs.extraQemuConf)
	if err := writeFileAtomic(filepath.Join(hs.etcDir, "qemu.conf"), append([]byte(head), hs.qemuConfOrig...), 0o600); err != nil {
		return err
	}
	hs.mode = m
	conf := fmt.Sprintf("# written by internal/e2e for host %s\n"+
		"state_dir = %q\nlog_file = %q\nqemu_conf = %q\ndaemon_pid_files = [ %q ]\n", hs.name, hs.stateDir, hs.logFile, "/etc/libvirt/qemu.conf", libvirtdPidFile)
	if dryRun {
		conf += "dry_run = 1\n"
	}
	if err := writeFileAtomic(filepath.Join(hs.etcDir, "libvirt-dac-hook.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	hs.dryRun = dryRun
	return nil
}

// keeperScript runs in the new mount namespace (propagation private, so
// nothing mounted here reaches the machine): it mounts the host's own
// directories over the machine's, says "ready" and becomes the sleeping
// keeper of the namespace.
//
// For a libvirt in a root directory (lv.root) the mounts go under the
// root, which also gets the machine's /dev (with a devpts of its own),
// a /proc, the machine's /sys, the directory of
// the work dir (same path: the images are the machine's) and the
// machine's /etc/passwd and /etc/group (the same names for the same ids,
// in qemu.conf, labels and /dev/kvm's group); the keeper then makes it
// the namespace's root (pivot_root).
func (hs *host) keeperScript() string {
	r := hs.lv.root
	var b strings.Builder
	b.WriteString("set -e\n")
	bind := func(opt, src, dst string) {
		// On a machine without the directory it is created empty: the
		// mount needs a mount point.
		fmt.Fprintf(&b, "mkdir -p %s\nmount %s %s %s\n", shq(r+dst), opt, shq(src), shq(r+dst))
	}
	if r != "" {
		fmt.Fprintf(&b, "mount --bind %s %s\n", shq(r), shq(r))
		bind("--rbind", "/dev", "/dev")
		// A devpts of the root's own, as containers have: QEMU's pty
		// serial finds no /dev/pts entry through the machine's.
		fmt.Fprintf(&b, "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts %s\n", shq(r+"/dev/pts"))
		bind("--rbind", "/sys", "/sys")
		fmt.Fprintf(&b, "mount -t proc proc %s\n", shq(r+"/proc"))
		fmt.Fprintf(&b, "mount -t tmpfs -o mode=1777 dachook-e2e-tmp %s\n", shq(r+"/tmp"))
		parent := filepath.Dir(hs.h.workDir)
		// --rbind: with the filesystems mounted below the work dir (the
		// migration topic's shared storage).
		bind("--rbind", parent, parent)
		for _, f := range []string{"/etc/passwd", "/etc/group"} {
			fmt.Fprintf(&b, "mount --bind %s %s\n", shq(f), shq(r+f))
		}
	}
	for _, d := range hostDirs {
		bind("--bind", hs.own(d), d)
	}
	fmt.Fprintf(&b, "mkdir -p %s\nmount -t tmpfs -o mode=0755 dachook-e2e-run %s\n", shq(r+"/run/libvirt"), shq(r+"/run/libvirt"))
	if r != "" {
		// pivot_root rather than chroot: the namespace's "/" is then the
		// root, and its mount table reads as a real host's does to libvirt
		// (which builds QEMU's /dev from it); the machine's root is gone.
		fmt.Fprintf(&b, "mkdir -p %s\ncd %s\npivot_root . .dachook-e2e-oldroot\ncd /\numount -l /.dachook-e2e-oldroot\n",
			shq(r+"/.dachook-e2e-oldroot"), shq(r))
	}
	b.WriteString("echo ready\nexec sleep infinity\n")
	return b.String()
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (hs *host) startKeeper() error {
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", hs.keeperScript())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("host %s: keeper stdout: %w", hs.name, err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %s: start the namespace keeper: %w", hs.name, err)
	}
	hs.keeper = cmd
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = cmd.Wait()
		return fmt.Errorf("host %s: namespace setup failed: %s", hs.name, strings.TrimSpace(stderr.String()))
	}
	if hs.nsID, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid)); err != nil {
		return fmt.Errorf("host %s: read the keeper's mount namespace: %w", hs.name, err)
	}
	if self, _ := os.Readlink("/proc/self/ns/mnt"); self == hs.nsID {
		return fmt.Errorf("host %s: the keeper runs in the machine's mount namespace", hs.name)
	}
	return hs.h.record(func(r *runRecord) {
		r.Hosts = append(r.Hosts, hostRecord{Name: hs.name, Keeper: cmd.Process.Pid, NS: hs.nsID})
	})
}

// pid is the keeper's pid: /proc/PID/root is the host's view of the files.
// It is -1 once the host stopped: its paths then name nothing.
func (hs *host) pid() int {
	if hs.keeper == nil {
		return -1
	}
	return hs.keeper.Process.Pid
}

// path is p as the host's daemons see it, openable from the tests.
func (hs *host) path(p string) string {
	return filepath.Join("/proc", strconv.Itoa(hs.pid()), "root", p)
}

// uri is the libvirt URI of the host's daemon.
func (hs *host) uri() string {
	return "qemu+unix:///system?socket=" + hs.path("/run/libvirt/libvirt-sock")
}

// nsCommand runs argv inside the host's mount namespace, as an admin of
// that host would.
func (hs *host) nsCommand(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"--target", strconv.Itoa(hs.pid()), "--mount", "--root", "--wd", "--"}, argv...)
	return exec.CommandContext(ctx, "nsenter", args...)
}

// daemonEnv is what the daemons run with: no LIBVIRT_DAC_HOOK_* of the
// test's environment may reach the hook they run.
var daemonEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C"}

func (hs *host) startDaemon(name string, argv ...string) (*daemonProc, error) {
	logPath := filepath.Join(hs.dir, name+".stderr")
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", logPath, err)
	}
	defer lf.Close()
	cmd := hs.nsCommand(context.Background(), argv...)
	cmd.Env = daemonEnv
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("host %s: start %s: %w", hs.name, name, err)
	}
	d := &daemonProc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	return d, nil
}

// stop ends the daemon with SIGTERM, or SIGKILL after 15s.
func (d *daemonProc) stop() error {
	if d == nil {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(15 * time.Second):
	}
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", d.name, d.cmd.Process.Pid)
	}
}

func (d *daemonProc) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (hs *host) startDaemons() error {
	var err error
	if hs.logd, err = hs.startDaemon("virtlogd", "virtlogd", "--pid-file", "/run/libvirt/virtlogd.pid"); err != nil {
		return err
	}
	if !waitFor(15*time.Second, func() bool {
		_, err := os.Stat(hs.path("/run/libvirt/virtlogd-sock"))
		return err == nil || hs.logd.exited()
	}) || hs.logd.exited() {
		return fmt.Errorf("host %s: virtlogd did not come up: %s", hs.name, tailFile(filepath.Join(hs.dir, "virtlogd.stderr"), 10))
	}
	// The watcher's unit is ordered before libvirtd's, and answers
	// handshakes before any domain starts.
	if err := hs.startWatcher(); err != nil {
		return err
	}
	return hs.startLibvirtd()
}

// libvirtdPidFile is where a host's libvirtd writes its pid, and so where
// the host's watcher looks for libvirt's daemon (daemon_pid_files): the
// default, /run/libvirtd.pid, is the machine's daemon's (and locked by it).
const libvirtdPidFile = "/run/libvirt/libvirtd.pid"

func (hs *host) startLibvirtd() error {
	var err error
	// The pid file goes to the host's /run/libvirt: the default,
	// /run/libvirtd.pid, is the machine's daemon's (and locked by it).
	if hs.libvirtd, err = hs.startDaemon("libvirtd", "libvirtd", "--pid-file", libvirtdPidFile); err != nil {
		return err
	}
	return hs.waitLibvirt(30 * time.Second)
}

func (hs *host) waitLibvirt(d time.Duration) error {
	var out string
	var err error
	if waitFor(d, func() bool {
		if hs.libvirtd.exited() {
			return true
		}
		out, err = hs.virsh(5*time.Second, "version")
		return err == nil
	}) && err == nil && !hs.libvirtd.exited() {
		return nil
	}
	if err == nil {
		err = errors.New("libvirtd exited")
	}
	return fmt.Errorf("host %s: libvirtd did not answer `virsh -c %s version` within %v: %w: %s\n%s", hs.name, hs.uri(), d,
		err, out, tailFile(filepath.Join(hs.dir, "libvirtd.stderr"), 10))
}

// restartLibvirtd stops libvirtd and starts it again, reading qemu.conf
// afresh. Running VMs survive it.
func (hs *host) restartLibvirtd() error {
	if err := hs.libvirtd.stop(); err != nil {
		return err
	}
	return hs.startLibvirtd()
}

// switchMode puts qemu.conf in mode m and the hook in or out of dry_run,
// and restarts libvirtd so it reads them (running VMs survive it; none
// should be running). It does nothing when the host is already so.
func (hs *host) switchMode(m ownershipMode, dryRun bool) error {
	if hs.mode == m && hs.dryRun == dryRun {
		return nil
	}
	if err := hs.writeConfig(m, dryRun); err != nil {
		return err
	}
	if err := hs.restartLibvirtd(); err != nil {
		return fmt.Errorf("restart libvirtd in mode %s: %w", m.name, err)
	}
	return nil
}

// stop destroys the host's leftover domains, stops its daemons and ends
// its namespace, with every process still in it. Safe to call twice.
func (hs *host) stop() error {
	if hs.keeper == nil {
		return nil
	}
	var errs []error
	var qemus []int
	if hs.libvirtd != nil && !hs.libvirtd.exited() {
		hs.destroyLeftovers()
		// A QEMU that outlived destroy: this host's, by its parent (QEMU
		// runs in a mount namespace of its own, so the host's namespace
		// does not find it, and another host's QEMU must be left alone).
		qemus = childQEMUs(hs.libvirtd.cmd.Process.Pid)
	}
	errs = append(errs, hs.libvirtd.stop(), hs.stopWatcher(), hs.logd.stop())
	hs.libvirtd, hs.logd = nil, nil
	errs = append(errs, killPids(qemus), killNamespace(hs.nsID, ""))
	_ = hs.keeper.Process.Kill()
	_ = hs.keeper.Wait()
	hs.keeper = nil
	return errors.Join(errs...)
}

// childQEMUs lists the QEMU processes whose parent is pid.
func childQEMUs(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(stat)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pid) && strings.HasPrefix(s[i+1:j], "qemu-system") {
			out = append(out, p)
		}
	}
	return out
}

// killPids kills pids and waits until they are gone.
func killPids(pids []int) error {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		if !waitFor(5*time.Second, func() bool { return !alive(pid) }) {
			return fmt.Errorf("pid %d still runs after SIGKILL", pid)
		}
	}
	return nil
}

// killNamespace kills every process left in mount namespace ns and, when
// workDir is set (undoing a killed run, all of whose hosts go), every QEMU
// process whose command line names a file under workDir (QEMU runs in a
// namespace of its own, a child of the host's).
func killNamespace(ns, workDir string) error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("read /proc: %w", err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && link == ns {
			pids = append(pids, pid)
			continue
		}
		if workDir == "" {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.Contains(string(cmdline), "qemu-system") && strings.Contains(string(cmdline), workDir+"/") {
			pids = append(pids, pid)
		}
	}
	if err := killPids(pids); err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return nil
}

// virsh runs one virsh command against the host's daemon and returns its
// combined output, which holds libvirt's error text on failure.
func (hs *host) virsh(timeout time.Duration, args ...string) (string, error) {
	if hs.keeper == nil {
		return "", fmt.Errorf("host %s is stopped", hs.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", hs.uri()}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// hookCommand runs the host's installed hook (/etc/libvirt/hooks/qemu)
// as an admin of that host would.
func (hs *host) hookCommand(ctx context.Context, args ...string) *exec.Cmd {
	return hs.nsCommand(ctx, append([]string{hookPath}, args...)...)
}

// destroyLeftovers removes every domain with our prefix, running or
// defined, then every storage pool with it (a persistent pool definition
// left in /etc/libvirt/storage would make the next pool-define fail).
func (hs *host) destroyLeftovers() {
	out, err := hs.virsh(10*time.Second, "list", "--all", "--name")
	if err != nil {
		return
	}
	for _, name := range strings.Fields(out) {
		if strings.HasPrefix(name, domainPrefix) {
			_, _ = hs.virsh(30*time.Second, "destroy", name)
			_, _ = hs.virsh(30*time.Second, "undefine", name, "--managed-save", "--nvram")
		}
	}
	out, err = hs.virsh(10*time.Second, "pool-list", "--all", "--name")
	if err != nil {
		return
	}
	for _, name := range strings.Fields(out) {
		if strings.HasPrefix(name, domainPrefix) {
			_, _ = hs.virsh(30*time.Second, "pool-destroy", name)
			_, _ = hs.virsh(30*time.Second, "pool-undefine", name)
		}
	}
}

// diagnose prints what a reader needs to see why an ownership check failed:
// the hook's own log, libvirt's log of the domain and the hook's status.
func (hs *host) diagnose(t *testing.T, domains ...string) {
	t.Helper()
	logBlock(t, "host "+hs.name+": hook log_file "+hs.logFile+" (these domains, tail)", hookLog(hs.logFile, domains, 40))
	for _, d := range domains {
		logBlock(t, "libvirt log of "+d+" (tail)", tailFile(hs.path("/var/log/libvirt/qemu/"+d+".log"), 8))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := hs.hookCommand(ctx, "status").CombinedOutput()
	if err != nil {
		out = append(out, []byte(fmt.Sprintf("\n(exit: %v)", err))...)
	}
	logBlock(t, "host "+hs.name+": "+hookPath+" status", string(out))
}

// qemuPID reads the pid libvirt recorded for a running domain.
func (hs *host) qemuPID(t *testing.T, name string) int {
	t.Helper()
	data, err := os.ReadFile(hs.path("/run/libvirt/qemu/" + name + ".pid"))
	if err != nil {
		t.Fatalf("host %s: read qemu pid of %s: %v", hs.name, name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("host %s: parse qemu pid of %s: %v", hs.name, name, err)
	}
	return pid
}
