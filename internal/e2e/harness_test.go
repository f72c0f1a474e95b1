//go:build e2e

package e2e

// The end-to-end harness: it runs the scenarios of this package against
// real libvirt daemons and QEMU with our hook installed, and leaves the
// machine's own libvirt exactly as it was. The daemons run in a private
// mount namespace with their own /etc/libvirt, /run/libvirt,
// /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and hook state
// (a host, host_test.go); the scenarios talk to them through the socket in
// that namespace. The default host starts in strict mode
// (dynamic_ownership = 0, the hook alone chowns); scenarios may switch it
// to cooperative mode (useMode) and back, which rewrites only the host's
// own qemu.conf.
//
// What the harness does change on the machine, and what it puts back:
//   - /dev/kvm is made root:kvm 0660 as udev would on a real host and left
//     so: it is the correct state, not a test artefact.
//   - Users dachook-alice and dachook-bob are created when absent (files in
//     the scenarios need owners that are neither root nor QEMU; the daemons
//     and the hook resolve names through the machine's /etc/passwd) and
//     removed again if this run created them.
//   - Loop devices attached by a scenario are detached and their nodes get
//     their owner and mode back.
//   - The work dir under /var/tmp (images, the hosts' directories, logs)
//     is removed.
//   - On a machine without them, empty /etc/libvirt, /var/lib/libvirt,
//     /var/log/libvirt, /var/cache/libvirt and /run/libvirt directories are
//     created as mount points (with libvirt installed they exist).
//
// TestHostUntouched and the end of TestMain check that the machine's
// /etc/libvirt (checksums, owners, modes), its libvirt daemons (pids) and
// its domains (`virsh list --all`) are as they were before the run.
//
// What a run started is recorded as it happens in backupDir (run.json), so
// a run that was killed before its teardown is undone by the next run
// before anything else happens: its namespaces' processes killed, its
// loops detached, its users removed. SIGINT/SIGTERM tear down, and a
// watchdog tears down before `go test -timeout` would kill the process
// without running deferred code. LIBVIRT_DAC_HOOK_E2E_KEEP=1 keeps the
// work directory (images, hook log, state) for inspection.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// domainPrefix names every domain the suite creates, so leftovers of an
	// interrupted run can be found and destroyed.
	domainPrefix = "dachook-e2e-"
	// hookPath is where libvirt finds the hook, on the machine and in each
	// host's namespace.
	hookPath  = "/etc/libvirt/hooks/qemu"
	backupDir = "/var/tmp/dachook-e2e.backup"
	aliceName = "dachook-alice"
	bobName   = "dachook-bob"
)

// errSkip marks setup failures that mean "this machine cannot run the suite"
// rather than "the suite found a bug"; they skip unless CI=true.
var errSkip = errors.New("environment cannot run the e2e suite")

// account is a user or group pair as QEMU or a file owner sees it.
type account struct {
	name     string
	uid, gid int
}

func (a account) owner() owner { return owner{a.uid, a.gid} }

type owner struct{ uid, gid int }

func (o owner) String() string { return fmt.Sprintf("%d:%d", o.uid, o.gid) }

// harness is the state of one e2e run; e2e is nil when the suite is skipped.
//
// It embeds the default host, on which the scenarios run: h.mode,
// h.switchMode, h.virsh, h.logFile are that host's.
type harness struct {
	*host

	workDir string // root-owned 0755 so QEMU can traverse it
	hookSrc string // the binary installed as each host's hooks/qemu

	qemu       account // user and group from our qemu.conf
	alice, bob account

	libvirt libvirtRelease // LIBVIRT_DAC_HOOK_E2E_LIBVIRT: what every host runs

	installedHook bool     // LIBVIRT_DAC_HOOK_E2E_INSTALLED=1
	locked        bool     // holds runLockPath: backupDir is ours to undo
	lockFile      *os.File // kept open: the flock lasts as long as the process

	// before is the machine's libvirt as it was before the run.
	before machineState

	hostsMu sync.Mutex
	hosts   []*host // every host started, stopped at teardown

	recMu sync.Mutex
	rec   runRecord // mirrored to backupDir for recovery

	teardownOnce sync.Once
	teardownErr  error
}

var e2e *harness

func TestMain(m *testing.M) {
	flag.Parse()
	closeInheritedFDs()
	os.Exit(runE2E(m))
}

// closeInheritedFDs marks every descriptor the test process inherited
// beyond stdio close-on-exec: the daemons it starts must not hold them,
// e.g. the flock of `flock /var/tmp/dachook-e2e.outer make e2e`, which a
// daemon outliving the run would keep held for every later run.
func closeInheritedFDs() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
			if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "/") && target != os.DevNull {
				inheritedFiles = append(inheritedFiles, target)
			}
		}
	}
}

// inheritedFiles are the files the test process inherited descriptors of
// (TestHostUntouched checks that no daemon holds them).
var inheritedFiles []string

func runE2E(m *testing.M) int {
	ci := os.Getenv("CI") == "true"
	if os.Geteuid() != 0 {
		if ci {
			fmt.Println("FAIL e2e: CI=true but not running as root; the e2e suite needs root")
			return 1
		}
		fmt.Println("SKIP e2e: needs root to run libvirtd and chown files (run: sudo make e2e)")
		return 0
	}
	h := &harness{installedHook: os.Getenv("LIBVIRT_DAC_HOOK_E2E_INSTALLED") == "1"}
	err := h.setup()
	if err != nil {
		terr := h.teardown()
		if errors.Is(err, errSkip) && !ci {
			fmt.Printf("SKIP e2e: %v\n", err)
			return 0
		}
		fmt.Printf("FAIL e2e setup: %v\n", err)
		if terr != nil {
			fmt.Printf("FAIL e2e teardown: %v\n", terr)
		}
		return 1
	}
	e2e = h
	stop := h.guard()
	code := m.Run()
	stop()
	if err := h.teardown(); err != nil {
		fmt.Printf("FAIL e2e teardown: %v\n", err)
		return 1
	}
	if diff := h.before.diff(readMachineState()); diff != "" {
		fmt.Printf("FAIL e2e: the machine's libvirt changed during the run:\n%s\n", diff)
		return 1
	}
	return code
}

// guard tears down on SIGINT/SIGTERM and shortly before go test's own
// -timeout panics (which skips every deferred function and would leave the
// host with our qemu.conf and hook).
func (h *harness) guard() (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var timer *time.Timer
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > time.Minute {
			timer = time.AfterFunc(d-45*time.Second, func() {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				fmt.Fprintf(os.Stderr, "e2e watchdog: goroutines:\n%s\n", buf[:n])
				fmt.Println("FAIL e2e: test timeout is near; tearing down before go test kills the process")
				_ = h.teardown()
				os.Exit(1)
			})
		}
	}
	go func() {
		select {
		case s := <-sigs:
			fmt.Printf("FAIL e2e: got %v; tearing down\n", s)
			_ = h.teardown()
			os.Exit(1)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		if timer != nil {
			timer.Stop()
		}
	}
}

// runRecord is what a run started or changed on the machine. It is kept
// in backupDir, updated as the run goes, so the next run can undo a run
// that was killed.
type runRecord struct {
	WorkDir      string
	CreatedUsers []string
	Loops        []loopRecord
	Hosts        []hostRecord

	// Written by the harness before it ran its daemons in namespaces (it
	// replaced the machine's files, listed in manifest.json): a killed run
	// of it is still undone.
	LibvirtdWasRunning bool `json:",omitempty"`
	StartedLibvirtd    bool `json:",omitempty"`
	StartedVirtlogd    bool `json:",omitempty"`
}

// hostRecord is a host's namespace: the keeper's pid and the namespace
// (readlink /proc/PID/ns/mnt), which names it while any process is in it.
type hostRecord struct {
	Name   string
	Keeper int
	NS     string
}

// loopRecord is an attached loop device and how its node looked before.
type loopRecord struct {
	Dev      string
	UID, GID int
	Mode     fs.FileMode
}

// record applies change to the run record and saves it.
func (h *harness) record(change func(r *runRecord)) error {
	h.recMu.Lock()
	defer h.recMu.Unlock()
	change(&h.rec)
	data, err := json.MarshalIndent(h.rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode run record: %w", err)
	}
	return writeFileAtomic(filepath.Join(backupDir, "run.json"), data, 0o600)
}

// runLockPath serialises e2e runs on one host. Two runs at once would undo
// each other: the second would take the first's backupDir for a killed
// run's, stop its libvirtd, restore qemu.conf and delete its users and work
// dir under it.
const runLockPath = "/var/tmp/dachook-e2e.lock"

// lock takes runLockPath, waiting up to wait for another run to finish. The
// flock goes with the process, so a killed run never leaves it held.
func (h *harness) lock(wait time.Duration) error {
	f, err := os.OpenFile(runLockPath, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open e2e run lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for announced := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			h.lockFile, h.locked = f, true
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return fmt.Errorf("lock %s: %w", runLockPath, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return fmt.Errorf("another e2e run still holds %s after %v", runLockPath, wait)
		}
		if !announced {
			fmt.Printf("e2e: another e2e run holds %s; waiting up to %v\n", runLockPath, wait)
			announced = true
		}
		time.Sleep(time.Second)
	}
}

func (h *harness) setup() error {
	if err := h.lock(10 * time.Minute); err != nil {
		return err
	}
	if err := recoverRun(); err != nil {
		return fmt.Errorf("recover from an interrupted run: %w", err)
	}
	// What the machine's libvirt looks like before anything of ours runs.
	h.before = readMachineState()
	if err := os.Mkdir(backupDir, 0o700); err != nil {
		return fmt.Errorf("create backup dir: %w", err)
	}
	if err := h.record(func(*runRecord) {}); err != nil {
		return err
	}
	if err := ensureTools(); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if h.qemu, err = qemuAccount(); err != nil {
		return err
	}
	if err := h.ensureUsers(); err != nil {
		return err
	}
	if err := fixKVM(); err != nil {
		return err
	}

	// /tmp may be a tmpfs mounted nodev/noexec or with a private mount; the
	// QEMU user only needs to traverse, so a root-owned 0755 dir under
	// /var/tmp is the portable choice.
	if h.workDir, err = os.MkdirTemp("/var/tmp", "dachook-e2e-"); err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	if err := h.record(func(r *runRecord) { r.WorkDir = h.workDir }); err != nil {
		return err
	}
	if err := os.Chmod(h.workDir, 0o755); err != nil {
		return fmt.Errorf("chmod work dir: %w", err)
	}
	if err := h.findHook(root); err != nil {
		return err
	}
	if h.libvirt, err = selectedLibvirt(); err != nil {
		return err
	}
	if h.host, err = h.startHost("a", strictMode, ""); err != nil {
		return err
	}
	ver, _ := h.host.virsh(10*time.Second, "version", "--daemon")
	fmt.Printf("e2e: libvirt %s (%s) up in its own mount namespace (host %s, %s); qemu runs as %s (%s); hook %s; work dir %s\n",
		h.libvirt.name, strings.Join(strings.Fields(ver), " "), h.host.name, h.host.uri(), h.qemu.name, h.qemu.owner(), h.hookSrc, h.workDir)
	return nil
}

// startHost starts a host (see newHost) that teardown stops.
func (h *harness) startHost(name string, m ownershipMode, extraQemuConf string) (*host, error) {
	hs, err := h.newHost(name, h.libvirt, m, extraQemuConf)
	if hs != nil {
		h.hostsMu.Lock()
		h.hosts = append(h.hosts, hs)
		h.hostsMu.Unlock()
	}
	return hs, err
}

// teardown is idempotent and runs every step even when earlier ones fail.
func (h *harness) teardown() error {
	h.teardownOnce.Do(func() {
		if !h.locked {
			return // backupDir, if any, belongs to another run
		}
		h.recMu.Lock()
		rec := h.rec
		h.recMu.Unlock()
		if _, err := os.Stat(backupDir); err != nil {
			return // setup never got as far as changing anything
		}
		var errs []error
		h.hostsMu.Lock()
		for _, hs := range h.hosts {
			errs = append(errs, hs.stop())
		}
		h.hostsMu.Unlock()
		errs = append(errs, undoRun(rec, os.Getenv("LIBVIRT_DAC_HOOK_E2E_KEEP") == "1"))
		h.teardownErr = errors.Join(errs...)
	})
	return h.teardownErr
}

// undoRun puts the machine back as rec says it was, and removes backupDir
// once everything is back.
func undoRun(rec runRecord, keepWorkDir bool) error {
	var errs []error
	for _, hr := range rec.Hosts {
		errs = append(errs, killNamespace(hr.NS, rec.WorkDir))
	}
	errs = append(errs, undoLegacyDaemons(rec))
	errs = append(errs, detachLoops(rec))
	filesErr := restoreFiles()
	errs = append(errs, filesErr)
	if rec.LibvirtdWasRunning {
		if out, err := exec.Command("libvirtd", "-d").CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("restart the original libvirtd: %w: %s", err, out))
		}
	}
	for _, name := range rec.CreatedUsers {
		if _, err := user.Lookup(name); err != nil {
			continue
		}
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("userdel %s: %w: %s", name, err, out))
		}
	}
	if rec.WorkDir != "" && !keepWorkDir {
		errs = append(errs, os.RemoveAll(rec.WorkDir))
	}
	if filesErr == nil {
		// With the files back, nothing is left to recover; a failed
		// restore keeps the backup for the next run to retry.
		errs = append(errs, os.RemoveAll(backupDir))
	}
	return errors.Join(errs...)
}

// undoLegacyDaemons stops the machine's daemons a killed run of the
// harness before namespaces started (see runRecord).
func undoLegacyDaemons(rec runRecord) error {
	var errs []error
	for _, d := range []struct {
		started bool
		name    string
		pidFile string
	}{{rec.StartedLibvirtd, "libvirtd", "/run/libvirtd.pid"}, {rec.StartedVirtlogd, "virtlogd", "/run/virtlogd.pid"}} {
		if !d.started {
			continue
		}
		if pid, ok := daemonPID(d.pidFile); ok {
			errs = append(errs, stopDaemon(d.name, pid))
		}
	}
	return errors.Join(errs...)
}

// detachLoops detaches loop devices still backed by files of the run and
// gives their nodes back the owner and mode they had.
func detachLoops(rec runRecord) error {
	var errs []error
	for _, l := range rec.Loops {
		out, err := exec.Command("losetup", "-n", "-O", "BACK-FILE", "--list", l.Dev).Output()
		if err == nil && rec.WorkDir != "" && strings.HasPrefix(strings.TrimSpace(string(out)), rec.WorkDir+"/") {
			if out, err := exec.Command("losetup", "-d", l.Dev).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("losetup -d %s: %w: %s", l.Dev, err, out))
			}
		}
		if err := os.Chown(l.Dev, l.UID, l.GID); err != nil {
			errs = append(errs, fmt.Errorf("chown %s back: %w", l.Dev, err))
		}
		if err := os.Chmod(l.Dev, l.Mode); err != nil {
			errs = append(errs, fmt.Errorf("chmod %s back: %w", l.Dev, err))
		}
	}
	return errors.Join(errs...)
}

// ensureTools installs libvirt and QEMU when they are missing and apt-get is
// there; a fresh CI machine has neither.
func ensureTools() error {
	missing := missingTools()
	if len(missing) == 0 {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%w: missing %s and no apt-get to install them", errSkip, strings.Join(missing, ", "))
	}
	fmt.Printf("e2e: installing libvirt and QEMU (missing: %s)\n", strings.Join(missing, ", "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"update", "-q"},
		{"install", "-y", "-q", "libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "qemu-utils", "acl", "attr", "ovmf"},
	} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", args[0], err, tail(string(out), 20))
		}
	}
	if missing := missingTools(); len(missing) > 0 {
		return fmt.Errorf("still missing after apt-get install: %s", strings.Join(missing, ", "))
	}
	return nil
}

func missingTools() []string {
	// go test may run with a PATH lacking the sbin directories.
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if !strings.Contains(":"+os.Getenv("PATH")+":", ":"+d+":") {
			if err := os.Setenv("PATH", os.Getenv("PATH")+":"+d); err != nil {
				return []string{fmt.Sprintf("(PATH cannot be extended with %s: %v)", d, err)}
			}
		}
	}
	var missing []string
	for _, t := range []string{"libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "qemu-img", "losetup", "useradd"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	return missing
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// qemuAccount picks the account QEMU will run as: Debian's libvirt-qemu, or
// the Fedora-style qemu; group kvm when it exists so /dev/kvm stays usable.
func qemuAccount() (account, error) {
	var u *user.User
	var err error
	for _, name := range []string{"libvirt-qemu", "qemu"} {
		if u, err = user.Lookup(name); err == nil {
			break
		}
	}
	if u == nil {
		return account{}, fmt.Errorf("%w: no libvirt-qemu or qemu user (is libvirt-daemon-system installed?)", errSkip)
	}
	a := account{name: u.Username}
	a.uid, _ = strconv.Atoi(u.Uid)
	a.gid, _ = strconv.Atoi(u.Gid)
	group := ""
	if g, err := user.LookupGroup("kvm"); err == nil {
		a.gid, _ = strconv.Atoi(g.Gid)
		group = "kvm"
	} else if g, err := user.LookupGroupId(u.Gid); err == nil {
		group = g.Name
	}
	a.name = u.Username + ":" + group
	return a, nil
}

// ensureUsers creates the file owners of the scenarios when absent
// (recording them for removal) and looks them up.
func (h *harness) ensureUsers() error {
	for _, name := range []string{aliceName, bobName} {
		created, err := ensureUser(name)
		if err != nil {
			return err
		}
		if created {
			if err := h.record(func(r *runRecord) { r.CreatedUsers = append(r.CreatedUsers, name) }); err != nil {
				return err
			}
		}
	}
	var err error
	if h.alice, err = lookupAccount(aliceName); err != nil {
		return err
	}
	h.bob, err = lookupAccount(bobName)
	return err
}

func ensureUser(name string) (created bool, err error) {
	if _, err := user.Lookup(name); err == nil {
		return false, nil
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--user-group",
		"--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("useradd %s: %w: %s", name, err, out)
	}
	return true, nil
}

func lookupAccount(name string) (account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, fmt.Errorf("look up %s: %w", name, err)
	}
	a := account{name: name}
	a.uid, _ = strconv.Atoi(u.Uid)
	a.gid, _ = strconv.Atoi(u.Gid)
	return a, nil
}

// fixKVM does what udev does on a real host; containers and fresh VMs often
// have /dev/kvm root:root 0600 which makes QEMU fail for reasons unrelated
// to the hook. TCG domains do not need it, but libvirt probes it.
func fixKVM() error {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return nil
	}
	g, err := user.LookupGroup("kvm")
	if err != nil {
		return nil
	}
	gid, _ := strconv.Atoi(g.Gid)
	if err := os.Chown("/dev/kvm", 0, gid); err != nil {
		return fmt.Errorf("chown /dev/kvm: %w", err)
	}
	if err := os.Chmod("/dev/kvm", 0o660); err != nil {
		return fmt.Errorf("chmod /dev/kvm: %w", err)
	}
	return nil
}

// ownershipMode is how qemu.conf sets up libvirt's own DAC driver.
type ownershipMode struct {
	name             string
	dynamicOwnership bool // libvirt labels files itself (cooperative mode)
	rememberOwner    bool // libvirt keeps owners in trusted.libvirt.security.* xattrs
}

func (m ownershipMode) cooperative() bool { return m.dynamicOwnership }

var (
	// strictMode is the harness's normal state: only the hook chowns.
	// remember_owner = 0: with dynamic_ownership = 0 libvirt does not
	// chown images anyway, but remember_owner would still make it write
	// trusted.libvirt.security.* xattrs on some paths; off keeps libvirt's
	// hands entirely off the files the hook manages.
	strictMode     = ownershipMode{name: "strict"}
	coopRemember   = ownershipMode{name: "coop-remember", dynamicOwnership: true, rememberOwner: true}
	coopNoRemember = ownershipMode{name: "coop-noremember", dynamicOwnership: true}
)

// useMode switches the host to mode m for the rest of t and back to the
// harness's normal state (strict, hook on) when t ends.
//
// LIBVIRT_DAC_HOOK_E2E_LIBVIRT_ONLY=1 puts the hook in dry_run in the
// cooperative modes: the scenarios then fail wherever libvirt alone gets an
// owner wrong, and their "observed" tables show what libvirt itself does.
func (h *harness) useMode(t *testing.T, m ownershipMode) {
	t.Helper()
	t.Cleanup(func() {
		if err := h.switchMode(strictMode, false); err != nil {
			t.Errorf("put the host back to strict mode: %v", err)
		}
	})
	dryRun := m.cooperative() && os.Getenv("LIBVIRT_DAC_HOOK_E2E_LIBVIRT_ONLY") == "1"
	if dryRun {
		t.Logf("LIBVIRT_DAC_HOOK_E2E_LIBVIRT_ONLY=1: the hook only logs in %s; owners are libvirt's alone", m.name)
	}
	if err := h.switchMode(m, dryRun); err != nil {
		t.Fatalf("switch the host to %s: %v", m.name, err)
	}
}

// findHook picks the hook under test: the freshly built binary (built here
// when `make e2e` did not), or with LIBVIRT_DAC_HOOK_E2E_INSTALLED=1 what
// the machine's /etc/libvirt/hooks/qemu leads to (the installed package).
// Each host gets a copy at its own hooks/qemu.
func (h *harness) findHook(root string) error {
	if h.installedHook {
		p, err := filepath.EvalSymlinks(hookPath)
		if err != nil {
			return fmt.Errorf("LIBVIRT_DAC_HOOK_E2E_INSTALLED=1 but no hook installed: %w", err)
		}
		h.hookSrc = p
		return nil
	}
	bin := filepath.Join(root, "bin", "libvirt-dac-hook")
	if _, err := os.Stat(bin); err != nil {
		// `make e2e` builds first; a bare `go test -tags e2e` may not have.
		bin = filepath.Join(h.workDir, "libvirt-dac-hook")
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./hook")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build the hook: %w: %s", err, out)
		}
	}
	h.hookSrc = bin
	return nil
}

// writeFileAtomic replaces path so libvirtd never reads half a file.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp := path + ".dachook-e2e.tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// backupEntry is one machine file replaced by a run of the harness before
// namespaces, as its manifest.json lists it.
type backupEntry struct {
	Path    string
	Existed bool
	Mode    fs.FileMode
	UID     int
	GID     int
	Copy    string // file name inside backupDir
}

// restoreFiles puts back every file in the backup manifest; no manifest
// means setup stopped before it replaced any.
func restoreFiles() error {
	data, err := os.ReadFile(filepath.Join(backupDir, "manifest.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read backup manifest: %w", err)
	}
	var entries []backupEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("decode backup manifest: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !e.Existed {
			if err := os.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", e.Path, err))
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(backupDir, e.Copy))
		if err == nil {
			err = writeFileAtomic(e.Path, data, e.Mode)
		}
		if err == nil {
			err = os.Chown(e.Path, e.UID, e.GID)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", e.Path, err))
		}
	}
	return errors.Join(errs...)
}

// recoverRun undoes a run that was killed before its teardown (SIGKILL, a
// crashed machine): its backupDir is still there.
func recoverRun() error {
	if _, err := os.Stat(backupDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	fmt.Printf("e2e: %s exists: a previous run did not tear down; undoing it first\n", backupDir)
	var rec runRecord
	if data, err := os.ReadFile(filepath.Join(backupDir, "run.json")); err == nil {
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("decode run record: %w", err)
		}
	}
	return undoRun(rec, false)
}

// daemonPID reads a libvirt-style pid file and reports whether that process
// is alive. A zombie counts as gone: daemons started with -d are reparented
// to init, which in containers does not always reap them.
func daemonPID(pidFile string) (int, bool) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	return pid, alive(pid)
}

func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself
	// contain spaces or parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	return stat[i+2] != 'Z' && stat[i+2] != 'X'
}

func stopDaemon(name string, pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): %w", name, pid, err)
	}
	if waitFor(15*time.Second, func() bool { return !alive(pid) }) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitFor(5*time.Second, func() bool { return !alive(pid) }) {
		return nil
	}
	return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", name, pid)
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// virsh runs one virsh command against the default host's daemon.
func virsh(timeout time.Duration, args ...string) (string, error) {
	return e2e.host.virsh(timeout, args...)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hookLog returns the last n lines of the hook's log that mention one of
// domains (the log is shared by every scenario), or its plain tail when none
// does, e.g. because the hook failed before it knew the domain.
func hookLog(path string, domains []string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		for _, d := range domains {
			if strings.Contains(line, "domain="+d+" ") || strings.Contains(line, "domain=\""+d+"\"") || strings.Contains(line, "domain "+d+":") {
				keep = append(keep, line)
				break
			}
		}
	}
	if len(keep) == 0 {
		return tail(string(data), n)
	}
	return tail(strings.Join(keep, "\n"), n)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return tail(string(data), n)
}

// logBlock logs text one line per t.Log call: `make e2e` filters go test's
// output to lines starting with the test file name, and a multi-line t.Log
// would show only its first line there.
func logBlock(t *testing.T, title, text string) {
	t.Helper()
	t.Logf("--- %s ---", title)
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		t.Logf("  | %s", sc.Text())
	}
}

var nameSanitizer = regexp.MustCompile(`[^A-Za-z0-9]+`)
