package cli_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/qemuproc"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/doctor"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

// The QEMU user and group every fixture's qemu.conf names, numerically so
// the tests do not depend on the host's accounts.
const (
	qemuID   = 64055
	imageUID = 1000 // owner of the fixture's images
)

var qemuOwner = fmt.Sprintf("%d:%d", qemuID, qemuID)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the fixture chowns files and the hook chowns them back")
	}
}

// fixture is a host in a directory: images, a protected "etc", qemu.conf,
// the hook's config and its state directory.
type fixture struct {
	t        *testing.T
	root     string
	conf     string // the hook's config ($LIBVIRT_DAC_HOOK_CONFIG)
	qemuConf string
	state    string
	logFile  string
}

// newFixture builds the standard tree under t.TempDir() and points
// $LIBVIRT_DAC_HOOK_CONFIG at its config:
//
//	img/disk.raw     1000:1000    raw disk
//	img/top.qcow2    1000:1000    qcow2 whose header names base.raw (raw)
//	img/base.raw     0:0          its backing file
//	img/mine.raw     64055:64055  already the QEMU user's
//	etc/secret       0:0          under a protected directory
//	boot/vmlinuz     0:0          a kernel
func newFixture(t *testing.T) *fixture {
	t.Helper()
	needRoot(t)
	root := t.TempDir()
	// t.TempDir makes 0700 directories the QEMU user cannot search.
	for _, d := range []string{root, filepath.Dir(root)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{
		t: t, root: root,
		conf:     filepath.Join(root, "hook.conf"),
		qemuConf: filepath.Join(root, "qemu.conf"),
		state:    filepath.Join(root, "state"),
		logFile:  filepath.Join(root, "hook.log"),
	}
	f.write("img/disk.raw", "disk", imageUID)
	f.qcow2("img/top.qcow2", "base.raw", "raw", imageUID)
	f.write("img/base.raw", "base", 0)
	f.write("img/mine.raw", "mine", qemuID)
	f.write("etc/secret", "secret", 0)
	f.write("boot/vmlinuz", "kernel", 0)
	f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\n", qemuID, qemuID))
	f.writeConf("")
	t.Setenv("LIBVIRT_DAC_HOOK_CONFIG", f.conf)
	// Either would override the config under test.
	t.Setenv("LIBVIRT_DAC_HOOK_DRY_RUN", "")
	t.Setenv("LIBVIRT_DAC_HOOK_STATE_DIR", "") // restored after the test
	if err := os.Unsetenv("LIBVIRT_DAC_HOOK_STATE_DIR"); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) path(rel string) string { return filepath.Join(f.root, rel) }

func (f *fixture) write(rel, data string, uid int) {
	f.t.Helper()
	p := f.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		f.t.Fatal(err)
	}
}

// qcow2 writes a minimal qcow2 v3 header naming backing with format bfmt.
func (f *fixture) qcow2(rel, backing, bfmt string, uid int) {
	f.t.Helper()
	b := make([]byte, 4096)
	be := binary.BigEndian
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], 3)
	be.PutUint32(b[20:], 16)
	be.PutUint64(b[24:], 1<<20)
	be.PutUint32(b[100:], 112)
	be.PutUint32(b[112:], 0xe2792aca)
	be.PutUint32(b[116:], uint32(len(bfmt)))
	copy(b[120:], bfmt)
	be.PutUint64(b[8:], 1024)
	be.PutUint32(b[16:], uint32(len(backing)))
	copy(b[1024:], backing)
	f.write(rel, string(b), uid)
}

func (f *fixture) writeQEMUConf(content string) {
	f.t.Helper()
	if err := os.WriteFile(f.qemuConf, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// writeConf writes the hook's config: the fixture's settings, then extra.
// A setting in extra replaces the fixture's (the hook refuses duplicates).
func (f *fixture) writeConf(extra string) {
	f.t.Helper()
	base := fmt.Sprintf(`qemu_conf = %q
state_dir = %q
log_file = %q
syslog = 0
protected_paths = [%q]
parent_search_acl = 0
lock_timeout = 10
sysfs_root = %q
dev_root = %q
storage_pool_dir = %q
`, f.qemuConf, f.state, f.logFile, f.path("etc"), f.path("sys"), f.path("dev"), f.path("pools"))
	overridden := make(map[string]bool)
	for _, l := range strings.Split(extra, "\n") {
		if k, _, ok := strings.Cut(l, "="); ok {
			overridden[strings.TrimSpace(k)] = true
		}
	}
	var c strings.Builder
	for _, l := range strings.SplitAfter(base, "\n") {
		if k, _, _ := strings.Cut(l, "="); !overridden[strings.TrimSpace(k)] {
			c.WriteString(l)
		}
	}
	c.WriteString(extra)
	if err := os.WriteFile(f.conf, []byte(c.String()), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// domainXML is a domain named name using the fixture's files; $ROOT in
// devices is replaced by the fixture root.
func (f *fixture) domainXML(name, devices string) string {
	return strings.ReplaceAll(`<domain type='kvm'>
  <name>`+name+`</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
`+devices+`
  </devices>
</domain>
`, "$ROOT", f.root)
}

// standardDisks are the devices of the usual test domain.
const standardDisks = `    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$ROOT/img/disk.raw'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$ROOT/img/top.qcow2'/><target dev='vdb' bus='virtio'/></disk>`

// owners maps every file of the fixture but the state dir and log to its
// owner.
func (f *fixture) owners() map[string]string {
	f.t.Helper()
	m := make(map[string]string)
	err := filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == f.state || p == f.logFile {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		m[p] = ownerOf(f.t, p)
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

func ownerOf(t *testing.T, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// checkOwners reports every path whose owner differs from want.
func (f *fixture) checkOwners(want map[string]string) {
	f.t.Helper()
	got := f.owners()
	for p, o := range want {
		if got[p] != o {
			f.t.Errorf("owner of %s is %s, want %s", f.rel(p), got[p], o)
		}
	}
}

func (f *fixture) rel(p string) string { return strings.ReplaceAll(p, f.root, "$ROOT") }

// stateEntries returns the journal's entries (none when there is no
// state file yet).
func (f *fixture) stateEntries() []*journal.Entry {
	f.t.Helper()
	st, err := journal.LoadFile(filepath.Join(f.state, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		f.t.Fatalf("state file: %v", err)
	}
	return st.All()
}

func (f *fixture) checkNoEntries() {
	f.t.Helper()
	for _, e := range f.stateEntries() {
		f.t.Errorf("state still holds %s (holders %+v)", f.rel(e.Path), e.Holders)
	}
	if aside, _ := filepath.Glob(filepath.Join(f.state, "*.damaged-*")); len(aside) > 0 {
		f.t.Errorf("state files moved aside: %v", aside)
	}
}

// result is one in-process run of cli.Main.
type result struct {
	code           int
	stdout, stderr string
}

func run(stdin io.Reader, args ...string) result {
	var out, errb bytes.Buffer
	code := cli.Main(append([]string{"libvirt-dac-hook"}, args...), stdin, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// noRead is a stdin that fails the test when read: calls that must not
// look at the XML use it.
type noRead struct{ t *testing.T }

func (r noRead) Read([]byte) (int, error) {
	r.t.Errorf("stdin was read")
	return 0, io.EOF
}

// setRunDir points the hook at a test's libvirt run directory; the
// returned func puts the real one back.
func setRunDir(dir string) func() {
	old := qemuproc.RunDir
	qemuproc.RunDir = dir
	return func() { qemuproc.RunDir = old }
}

// setProcRoot points the hook's view of QEMU processes at a test's
// process tree; the returned func puts the real one back.
func setProcRoot(dir string) func() {
	old := qemuproc.ProcRoot
	qemuproc.ProcRoot = dir
	return func() { qemuproc.ProcRoot = old }
}

// setDoctorPaths points doctor at a test's hook path and libvirt state
// directories; the returned func puts the real ones back.
func setDoctorPaths(hook string, dirs []string) func() {
	oldHook, oldDirs := doctor.HookPath, doctor.StateDirs
	doctor.HookPath, doctor.StateDirs = hook, dirs
	return func() { doctor.HookPath, doctor.StateDirs = oldHook, oldDirs }
}
