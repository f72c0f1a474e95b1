package cli_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/watch"
)

// stressSeedEnv overrides the stress test's random seed.
const stressSeedEnv = "LIBVIRT_DAC_HOOK_STRESS_SEED"

// buildHook builds the hook binary the way the Makefile does (static, no
// cgo) into a temp dir.
func buildHook(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		// Root's PATH often lacks Go; this is where the Go tarball goes.
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(t.TempDir(), "hook")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, "../../hook")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ../../hook: %v\n%s", err, out)
	}
	return bin
}

// hookEnv is the environment of a hook process: ours, with the config
// pointed at the fixture and nothing that would override it.
func hookEnv(conf string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LIBVIRT_DAC_HOOK_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LIBVIRT_DAC_HOOK_CONFIG="+conf)
}

// TestStressConcurrentHooks runs real hook processes for ten
// domains at once, all sharing one state directory and five files, each
// domain also with a file of its own. Every domain prepares and releases
// several times, in its own order, at random moments relative to the
// others. Checked:
//   - every process exits 0 and writes nothing to stdout or stderr;
//   - while a domain is between its prepare and its release, all its files
//     belong to QEMU (another domain's release must not give back a file
//     it still holds);
//   - `status --json`, run all along, always reads a whole state;
//   - at the end every file has its original owner and the state is empty.
//
// In the "search-acl" variant the image directory is closed to QEMU and
// the hook grants search permission with an ACL entry it must hold for as
// long as any domain needs it; the checks then run `test -r` as the QEMU
// user, so what is checked is that QEMU can really open its files.
func TestStressConcurrentHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test skipped in -short mode")
	}
	bin := buildHook(t)
	t.Run("chown", func(t *testing.T) { stress(t, bin, false) })
	t.Run("search-acl", func(t *testing.T) { stress(t, bin, true) })
}

func stress(t *testing.T, bin string, searchACL bool) {
	f := newFixture(t)
	f.writeConf("lock_timeout = 30\n")
	if searchACL {
		f.writeConf("lock_timeout = 30\nparent_search_acl = 1\n")
	}
	// The watcher runs as the service would, and every prepare and
	// release makes its handshake with it.
	stopWatcher := startWatcherProcess(t, bin, f.state)
	seed := stressSeed(t)
	t.Logf("seed %d (set $%s to repeat or vary)", seed, stressSeedEnv)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	doms := stressDomains(f, rng)
	if searchACL {
		if err := os.Chmod(f.path("img"), 0o750); err != nil {
			t.Fatal(err)
		}
		if qemuCan(t, "-x", f.path("img")) {
			t.Fatalf("test setup: QEMU can search %s before any prepare", f.rel(f.path("img")))
		}
	}
	before := f.owners()

	r := &stressRun{t: t, f: f, bin: bin, searchACL: searchACL}
	start := time.Now()
	stop := make(chan struct{})
	var wgStatus sync.WaitGroup
	wgStatus.Add(1)
	go func() {
		defer wgStatus.Done()
		r.statusLoop(stop)
	}()
	var wg sync.WaitGroup
	for _, d := range doms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.domainRounds(d)
		}()
	}
	wg.Wait()
	close(stop)
	wgStatus.Wait()
	t.Logf("%d hook processes (%d status) in %s", r.procs.Load(), r.statusRuns.Load(), time.Since(start).Round(time.Millisecond))

	f.checkOwners(before)
	f.checkNoEntries()
	if searchACL && qemuCan(t, "-x", f.path("img")) {
		t.Errorf("QEMU can still search %s after every release", f.rel(f.path("img")))
	}
	// The watcher rewrites labelled.json (through a temporary file) after
	// the last release's chowns: a temporary file is a leak only once no
	// writer runs.
	stopWatcher()
	checkStateDirClean(t, f)
}

// stressRounds is how many times each domain prepares and releases.
const stressRounds = 4

// stressSeed is the stress test's random seed: a fixed one unless
// $LIBVIRT_DAC_HOOK_STRESS_SEED says otherwise.
func stressSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(20261127)
	if s := os.Getenv(stressSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("$%s: %v", stressSeedEnv, err)
		}
		seed = n
	}
	return seed
}

// stressDom is one domain of the stress test.
type stressDom struct {
	name  string
	files []string // every file the domain uses
	xml   string
	rng   *rand.Rand
}

// stressDomains writes the shared and private files and returns the
// domains using them.
func stressDomains(f *fixture, rng *rand.Rand) []*stressDom {
	const (
		domains = 10
		shared  = 5
	)
	var sharedFiles []string
	for i := range shared {
		rel := fmt.Sprintf("img/shared%d.raw", i)
		f.write(rel, "", 3000+i)
		sharedFiles = append(sharedFiles, f.path(rel))
	}
	var doms []*stressDom
	for d := range domains {
		name := fmt.Sprintf("stress%02d", d)
		priv := fmt.Sprintf("img/%s.raw", name)
		f.write(priv, "", 4000+d)
		files := []string{f.path(priv)}
		// A random non-empty subset of the shared files, in random order.
		for _, i := range rng.Perm(shared)[:1+rng.IntN(shared)] {
			files = append(files, sharedFiles[i])
		}
		rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
		var disks strings.Builder
		for i, p := range files {
			fmt.Fprintf(&disks, "    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='vd%c' bus='virtio'/><shareable/></disk>\n", p, 'a'+i)
		}
		doms = append(doms, &stressDom{name: name, files: files, xml: f.domainXML(name, disks.String()),
			rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))})
	}
	return doms
}

// stressRun is what the goroutines of one stress run share.
type stressRun struct {
	t          *testing.T
	f          *fixture
	bin        string
	searchACL  bool
	procs      atomic.Int64
	statusRuns atomic.Int64
}

// hook runs one hook process and returns its exit code, stdout and stderr.
func (r *stressRun) hook(stdin string, args ...string) (int, string, string) {
	r.procs.Add(1)
	cmd := exec.Command(r.bin, args...)
	cmd.Env = hookEnv(r.f.conf)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Errorf("run %v: %v", args, err)
		code = -1
	}
	return code, out.String(), errb.String()
}

// checkHeld checks that all of d's files belong to QEMU (and, with the
// search ACL, that QEMU can read them).
func (r *stressRun) checkHeld(d *stressDom, when string) {
	for _, p := range d.files {
		// Not ownerOf: t.Fatal must not be called off the test goroutine.
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			r.t.Errorf("%s: %v", d.name, err)
			continue
		}
		if got := fmt.Sprintf("%d:%d", st.Uid, st.Gid); got != qemuOwner {
			r.t.Errorf("%s: %s is %s %s, want %s", d.name, r.f.rel(p), got, when, qemuOwner)
		}
		if r.searchACL && !qemuCan(r.t, "-r", p) {
			r.t.Errorf("%s: QEMU cannot read %s %s", d.name, r.f.rel(p), when)
		}
	}
}

// statusLoop runs `status --json` until stop closes, checking that each
// run reads a whole state.
func (r *stressRun) statusLoop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		code, out, errOut := r.hook("", "status", "--json")
		r.statusRuns.Add(1)
		var v struct {
			Entries []json.RawMessage `json:"entries"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
			r.t.Errorf("status --json during the stress = exit %d, stdout %q, stderr %q", code, out, errOut)
			return
		}
	}
}

// domainRounds prepares and releases d stressRounds times at random
// moments, checking that it holds its files in between.
func (r *stressRun) domainRounds(d *stressDom) {
	for round := range stressRounds {
		time.Sleep(time.Duration(d.rng.IntN(20)) * time.Millisecond)
		code, out, errOut := r.hook(d.xml, d.name, "prepare", "begin", "-")
		if code != 0 || out != "" || errOut != "" {
			r.t.Errorf("%s round %d: prepare = exit %d, stdout %q, stderr %q", d.name, round, code, out, r.f.rel(errOut))
			return
		}
		r.checkHeld(d, "after its prepare")
		time.Sleep(time.Duration(d.rng.IntN(30)) * time.Millisecond)
		r.checkHeld(d, "before its release")
		code, out, errOut = r.hook("", d.name, "release", "end", "-")
		if code != 0 || out != "" || errOut != "" {
			r.t.Errorf("%s round %d: release = exit %d, stdout %q, stderr %q", d.name, round, code, out, r.f.rel(errOut))
			return
		}
	}
}

// checkStateDirClean checks that nothing but the store, the locks and the
// watcher's record is left in the state directory. Called once every
// hook and the watcher have exited, so a temporary file is one a write
// left behind.
func checkStateDirClean(t *testing.T, f *fixture) {
	t.Helper()
	ents, err := os.ReadDir(f.state)
	if err != nil {
		return
	}
	for _, e := range ents {
		switch e.Name() {
		case "state.db", "lock", watch.SocketName, watch.LockName:
		case "inventory":
			// Every release removed its domain's record.
			left, _ := os.ReadDir(filepath.Join(f.state, e.Name()))
			for _, l := range left {
				switch {
				case l.Name() == "labelled.json": // the watcher's
				case strings.HasPrefix(l.Name(), ".tmp-"):
					t.Errorf("temporary file %s left in the inventory after every writer exited", l.Name())
				default:
					t.Errorf("inventory record %s left after every release", l.Name())
				}
			}
		default:
			t.Errorf("unexpected file %s left in the state dir", e.Name())
		}
	}
}

// qemuCan runs test(1) with op ("-r", "-x", ...) on p as the QEMU user, so
// that the kernel's own permission check, ACLs included, decides.
func qemuCan(t *testing.T, op, p string) bool {
	cmd := exec.Command("test", op, p)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: qemuID, Gid: qemuID, Groups: []uint32{qemuID}}}
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Errorf("test %s %s as uid %d: %v", op, p, qemuID, err)
	}
	return err == nil
}

// startWatcherProcess runs `bin watch` for stateDir and waits until it
// answers. The returned stop ends it (SIGTERM: its last flush done) and
// waits for it; it also runs when the test ends, before the directory is
// removed (cleanups run last registered first).
func startWatcherProcess(t *testing.T, bin, stateDir string) (stop func()) {
	t.Helper()
	c := exec.Command(bin, "watch")
	c.Env = append(os.Environ(), "LIBVIRT_DAC_HOOK_STATE_DIR="+stateDir)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = c.Process.Signal(syscall.SIGTERM)
			if err := c.Wait(); err != nil {
				t.Errorf("watcher: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	sock := filepath.Join(stateDir, watch.SocketName)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if conn, err := net.Dial("unix", sock); err == nil {
			_ = conn.Close()
			return stop
		}
		if time.Now().After(deadline) {
			t.Fatal("watcher not listening after 10s")
		}
	}
}
