//go:build e2e

package e2e

// The end-to-end harness: it turns this machine into a libvirt host whose
// QEMU driver has dynamic_ownership = 0 (strict mode) and our hook
// installed, runs the scenarios of this package against a real libvirtd and
// QEMU, and puts everything back afterwards. Scenarios may switch the host
// to cooperative mode (useMode) and back.
//
// What the harness changes on the host, and what it restores:
//   - /etc/libvirt/qemu.conf: our settings are prepended (virconf keeps the
//     first occurrence of a key), the original follows verbatim. Restored.
//     user/group: libvirt-qemu (or qemu) and kvm, so uid != gid and a
//     swapped chown is caught. Strict mode (the normal state):
//     dynamic_ownership = 0 so only the hook chowns; remember_owner = 0 so
//     libvirt writes no owner xattrs either. Cooperative mode groups
//     rewrite it with dynamic_ownership = 1 and remember_owner 1 or 0 and
//     restart libvirtd; the original is what is restored either way.
//   - /etc/libvirt/hooks/qemu: the freshly built hook, unless
//     LIBVIRT_DAC_HOOK_E2E_INSTALLED=1 (then the installed one is tested and
//     left alone). Restored (or removed when there was none).
//   - /etc/libvirt/libvirt-dac-hook.conf: points state_dir and log_file into
//     the run's work directory. Restored (or removed).
//   - libvirtd is restarted so it finds the hook (it only looks at start).
//     A libvirtd this run started is stopped at the end; one that was already
//     running is started again with `libvirtd -d` after the restore, so it
//     sees the original configuration. virtlogd is only stopped if this run
//     started it. libvirtd chowns its own directories under
//     /var/lib/libvirt/qemu to the configured user:group when it starts;
//     the next libvirtd start with the original qemu.conf sets them back.
//   - /dev/kvm is made root:kvm 0660 as udev would on a real host and left
//     so: it is the correct state, not a test artefact.
//   - Users dachook-alice and dachook-bob are created when absent (files in
//     the scenarios need owners that are neither root nor QEMU) and removed
//     again if this run created them.
//   - Loop devices attached by a scenario are detached and their nodes get
//     their owner and mode back.
//
// Everything above is recorded as it happens in backupDir (file copies plus
// a manifest, and run.json), so a run that was killed before its teardown
// is undone by the next run before anything else happens. SIGINT/SIGTERM
// tear down, and a watchdog tears down before `go test -timeout` would kill
// the process without running deferred code. LIBVIRT_DAC_HOOK_E2E_KEEP=1
// keeps the work directory (images, hook log, state) for inspection.

import (
	"bufio"
	"bytes"
	"context"
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
	libvirtURI   = "qemu:///system"
	qemuConfPath = "/etc/libvirt/qemu.conf"
	hookPath     = "/etc/libvirt/hooks/qemu"
	ourConfPath  = "/etc/libvirt/libvirt-dac-hook.conf"
	backupDir    = "/var/tmp/dachook-e2e.backup"
	libvirtdPID  = "/run/libvirtd.pid"
	virtlogdPID  = "/run/virtlogd.pid"
	aliceName    = "dachook-alice"
	bobName      = "dachook-bob"
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
type harness struct {
	workDir  string // root-owned 0755 so QEMU can traverse it
	stateDir string
	logFile  string
	hookBin  string // what is installed as hookPath (for status diagnostics)

	qemu       account // user and group from our qemu.conf
	alice, bob account

	// qemuConfOrig is qemu.conf as it was before the run, read once: later
	// rewrites (writeQemuConf) prepend to it, not to our own header.
	qemuConfOrig     []byte
	qemuConfOrigRead bool

	// mode is what qemu.conf and libvirtd are set to now; dryRun whether
	// the hook's config has dry_run = 1.
	mode   ownershipMode
	dryRun bool

	installedHook   bool // LIBVIRT_DAC_HOOK_E2E_INSTALLED=1
	startedLibvirtd bool
	locked          bool     // holds runLockPath: backupDir is ours to undo
	lockFile        *os.File // kept open: the flock lasts as long as the process

	recMu sync.Mutex
	rec   runRecord // mirrored to backupDir for recovery

	teardownOnce sync.Once
	teardownErr  error
}

var e2e *harness

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runE2E(m))
}

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

// runRecord is what a run changed besides the backed-up files. It is kept
// in backupDir, updated as the run goes, so the next run can undo a run that
// was killed.
type runRecord struct {
	WorkDir            string
	CreatedUsers       []string
	Loops              []loopRecord
	LibvirtdWasRunning bool
	StartedLibvirtd    bool
	StartedVirtlogd    bool
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
	h.stateDir = filepath.Join(h.workDir, "state")
	h.logFile = filepath.Join(h.workDir, "hook.log")
	if err := os.Mkdir(h.stateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}

	// Stop libvirtd before touching its configuration: a running daemon
	// would start VMs with a half-written setup.
	if pid, ok := daemonPID(libvirtdPID); ok {
		if err := h.record(func(r *runRecord) { r.LibvirtdWasRunning = true }); err != nil {
			return err
		}
		if err := stopDaemon("libvirtd", pid); err != nil {
			return err
		}
	}

	files := []string{qemuConfPath, ourConfPath}
	if !h.installedHook {
		files = append(files, hookPath)
	}
	if err := writeBackup(files); err != nil {
		return err
	}
	if err := h.writeQemuConf(strictMode); err != nil {
		return err
	}
	if err := h.installHook(root); err != nil {
		return err
	}
	if err := h.writeOurConf(false); err != nil {
		return err
	}
	h.dryRun = false

	if _, ok := daemonPID(virtlogdPID); !ok {
		if err := h.record(func(r *runRecord) { r.StartedVirtlogd = true }); err != nil {
			return err
		}
		if out, err := exec.Command("virtlogd", "-d").CombinedOutput(); err != nil {
			return fmt.Errorf("start virtlogd: %w: %s", err, out)
		}
	}
	if err := h.record(func(r *runRecord) { r.StartedLibvirtd = true }); err != nil {
		return err
	}
	h.startedLibvirtd = true
	if out, err := exec.Command("libvirtd", "-d").CombinedOutput(); err != nil {
		return fmt.Errorf("start libvirtd: %w: %s", err, out)
	}
	if err := waitLibvirt(30 * time.Second); err != nil {
		return err
	}
	if err := h.startWatcher(); err != nil {
		return err
	}
	destroyLeftovers()
	fmt.Printf("e2e: libvirtd up; qemu runs as %s (%s); hook %s; work dir %s\n",
		h.qemu.name, h.qemu.owner(), h.hookBin, h.workDir)
	return nil
}

// teardown is idempotent and runs every step even when earlier ones fail:
// leaving a host with our qemu.conf is worse than a noisy error.
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
		if h.startedLibvirtd {
			destroyLeftovers()
		}
		werr := h.stopWatcher()
		h.teardownErr = errors.Join(werr, undoRun(rec, os.Getenv("LIBVIRT_DAC_HOOK_E2E_KEEP") == "1"))
	})
	return h.teardownErr
}

// undoRun puts the host back as rec and the backup manifest say it was, and
// removes backupDir once everything is back.
func undoRun(rec runRecord, keepWorkDir bool) error {
	var errs []error
	if rec.StartedLibvirtd {
		if pid, ok := daemonPID(libvirtdPID); ok {
			errs = append(errs, stopDaemon("libvirtd", pid))
		}
	}
	if rec.StartedVirtlogd {
		if pid, ok := daemonPID(virtlogdPID); ok {
			errs = append(errs, stopDaemon("virtlogd", pid))
		}
	}
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

// writeQemuConf writes qemu.conf: our header for mode m, then the original
// file. libvirtd reads the file only when it starts (restartLibvirtd).
func (h *harness) writeQemuConf(m ownershipMode) error {
	if !h.qemuConfOrigRead {
		orig, err := os.ReadFile(qemuConfPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read %s: %w", qemuConfPath, err)
		}
		h.qemuConfOrig, h.qemuConfOrigRead = orig, true
	}
	user, group, _ := strings.Cut(h.qemu.name, ":")
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	head := fmt.Sprintf("# --- prepended by libvirt-dac-hook e2e tests (restored afterwards); first occurrence wins ---\n"+
		"user = %q\ngroup = %q\ndynamic_ownership = %d\nremember_owner = %d\n"+
		"# --- original file follows ---\n", user, group, b2i(m.dynamicOwnership), b2i(m.rememberOwner))
	if err := writeFileAtomic(qemuConfPath, append([]byte(head), h.qemuConfOrig...), 0o600); err != nil {
		return err
	}
	h.mode = m
	return nil
}

// switchMode puts qemu.conf in mode m and the hook in or out of dry_run,
// and restarts libvirtd so it reads them (running VMs survive it; none
// should be running). It does nothing when the host is already so.
func (h *harness) switchMode(m ownershipMode, dryRun bool) error {
	if h.mode == m && h.dryRun == dryRun {
		return nil
	}
	if err := h.writeQemuConf(m); err != nil {
		return err
	}
	if err := h.writeOurConf(dryRun); err != nil {
		return err
	}
	if err := restartLibvirtd(); err != nil {
		return fmt.Errorf("restart libvirtd in mode %s: %w", m.name, err)
	}
	return nil
}

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

// writeOurConf writes the hook's config for this run; dryRun makes hook
// mode only log what it would do (the harness's normal state is off).
func (h *harness) writeOurConf(dryRun bool) error {
	conf := fmt.Sprintf("# written by internal/e2e/harness_test.go; restored after the run\n"+
		"state_dir = %q\nlog_file = %q\nqemu_conf = %q\n", h.stateDir, h.logFile, qemuConfPath)
	if dryRun {
		conf += "dry_run = 1\n"
	}
	if err := writeFileAtomic(ourConfPath, []byte(conf), 0o644); err != nil {
		return err
	}
	h.dryRun = dryRun
	return nil
}

func (h *harness) installHook(root string) error {
	if h.installedHook {
		if _, err := os.Stat(hookPath); err != nil {
			return fmt.Errorf("LIBVIRT_DAC_HOOK_E2E_INSTALLED=1 but no hook installed: %w", err)
		}
		h.hookBin = hookPath + " (installed)"
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
	data, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("read hook binary: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(hookPath), 0o755); err != nil {
		return fmt.Errorf("create hooks dir: %w", err)
	}
	if err := writeFileAtomic(hookPath, data, 0o755); err != nil {
		return err
	}
	h.hookBin = bin
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

// backupEntry records one file the harness replaces.
type backupEntry struct {
	Path    string
	Existed bool
	Mode    fs.FileMode
	UID     int
	GID     int
	Copy    string // file name inside backupDir
}

func writeBackup(paths []string) error {
	var entries []backupEntry
	for i, p := range paths {
		e := backupEntry{Path: p}
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("stat %s: %w", p, err)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("back up %s: %w", p, err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			e.Existed, e.Mode, e.UID, e.GID = true, fi.Mode().Perm(), int(st.Uid), int(st.Gid)
			e.Copy = fmt.Sprintf("%d-%s", i, filepath.Base(p))
			if err := os.WriteFile(filepath.Join(backupDir, e.Copy), data, 0o600); err != nil {
				return fmt.Errorf("back up %s: %w", p, err)
			}
		}
		entries = append(entries, e)
	}
	data, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return fmt.Errorf("encode backup manifest: %w", err)
	}
	// The manifest is written last: its presence means the backup is whole.
	return writeFileAtomic(filepath.Join(backupDir, "manifest.json"), data, 0o600)
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
	if _, ok := daemonPID(libvirtdPID); ok && rec.StartedLibvirtd {
		destroyLeftovers()
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

// restartLibvirtd stops the running libvirtd, if any, and starts one that
// reads qemu.conf afresh. Running VMs survive it.
func restartLibvirtd() error {
	if pid, ok := daemonPID(libvirtdPID); ok {
		if err := stopDaemon("libvirtd", pid); err != nil {
			return err
		}
	}
	return startLibvirtd()
}

func startLibvirtd() error {
	if out, err := exec.Command("libvirtd", "-d").CombinedOutput(); err != nil {
		return fmt.Errorf("start libvirtd: %w: %s", err, out)
	}
	return waitLibvirt(30 * time.Second)
}

func waitLibvirt(d time.Duration) error {
	var out string
	var err error
	if waitFor(d, func() bool {
		out, err = virsh(5*time.Second, "version")
		return err == nil
	}) {
		return nil
	}
	return fmt.Errorf("libvirtd did not answer `virsh -c %s version` within %v: %w: %s", libvirtURI, d, err, out)
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

// virsh runs one virsh command against the system URI and returns its
// combined output, which holds libvirt's error text on failure.
func virsh(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", libvirtURI}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// destroyLeftovers removes every domain with our prefix, running or
// defined, then every storage pool with it (a persistent pool definition
// left in /etc/libvirt/storage would make the next pool-define fail).
func destroyLeftovers() {
	out, err := virsh(10*time.Second, "list", "--all", "--name")
	if err != nil {
		return
	}
	for _, name := range strings.Fields(out) {
		if strings.HasPrefix(name, domainPrefix) {
			_, _ = virsh(30*time.Second, "destroy", name)
			_, _ = virsh(30*time.Second, "undefine", name)
		}
	}
	out, err = virsh(10*time.Second, "pool-list", "--all", "--name")
	if err != nil {
		return
	}
	for _, name := range strings.Fields(out) {
		if strings.HasPrefix(name, domainPrefix) {
			_, _ = virsh(30*time.Second, "pool-destroy", name)
			_, _ = virsh(30*time.Second, "pool-undefine", name)
		}
	}
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

// diagnose prints what a reader needs to see why an ownership check failed:
// the hook's own log, libvirt's log of the domain and the hook's status.
func (h *harness) diagnose(t *testing.T, domains ...string) {
	t.Helper()
	logBlock(t, "hook log_file "+h.logFile+" (these domains, tail)", hookLog(h.logFile, domains, 40))
	for _, d := range domains {
		logBlock(t, "libvirt log of "+d+" (tail)", tailFile("/var/log/libvirt/qemu/"+d+".log", 8))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, hookPath, "status").CombinedOutput()
	if err != nil {
		out = append(out, []byte(fmt.Sprintf("\n(exit: %v)", err))...)
	}
	logBlock(t, hookPath+" status", string(out))
}

var nameSanitizer = regexp.MustCompile(`[^A-Za-z0-9]+`)
