package cli_test

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
)

// checkHookFailure asserts what libvirt sees of a failed hook call: the
// exit code, nothing on stdout, and exactly one line on stderr naming the
// domain and everything in want ($ROOT replaced by the fixture root).
func checkHookFailure(t *testing.T, f *fixture, res result, code int, domain string, want ...string) {
	t.Helper()
	t.Logf("exit %d, stderr: %s", res.code, f.rel(res.stderr))
	if res.code != code {
		t.Errorf("exit code %d, want %d (stderr %q)", res.code, code, res.stderr)
	}
	if res.stdout != "" {
		t.Errorf("hook mode wrote to stdout: %q", res.stdout)
	}
	if strings.Count(res.stderr, "\n") != 1 || !strings.HasSuffix(res.stderr, "\n") {
		t.Errorf("stderr is not exactly one line: %q", res.stderr)
	}
	if !strings.Contains(res.stderr, "domain "+domain+":") {
		t.Errorf("stderr does not name domain %s: %q", domain, res.stderr)
	}
	for _, w := range want {
		w = strings.ReplaceAll(w, "$ROOT", f.root)
		if !strings.Contains(res.stderr, w) {
			t.Errorf("stderr does not say %q: %q", f.rel(w), f.rel(res.stderr))
		}
	}
}

func TestHookBadInput(t *testing.T) {
	prepare := []string{"vm1", "prepare", "begin", "-"}
	release := []string{"vm1", "release", "end", "-"}
	lol := `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol9 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<domain type='kvm'><name>vm1</name><description>&lol9;</description></domain>`
	xxe := `<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/shadow">]>
<domain type='kvm'><name>vm1</name><description>&xxe;</description></domain>`
	disk := func(path string) string {
		return `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='` + path + `'/><target dev='vda' bus='virtio'/></disk>`
	}

	tests := []struct {
		name  string
		args  []string // default prepare
		setup func(f *fixture)
		stdin func(f *fixture) string // default the standard domain
		code  int
		want  []string
	}{
		{name: "empty stdin", stdin: func(*fixture) string { return "" }, code: cli.ExitInput, want: []string{"no domain XML on stdin"}},
		{name: "white space only", stdin: func(*fixture) string { return " \n\t\n" }, code: cli.ExitInput, want: []string{"empty input"}},
		{name: "truncated XML", stdin: func(f *fixture) string { x := f.domainXML("vm1", standardDisks); return x[:len(x)/2] },
			code: cli.ExitInput, want: []string{"domain XML"}},
		{name: "not a domain", stdin: func(*fixture) string { return "<network><name>vm1</name></network>" },
			code: cli.ExitInput, want: []string{"not a <domain> element (root is <network>)"}},
		{name: "billion laughs", stdin: func(*fixture) string { return lol }, code: cli.ExitInput, want: []string{"DOCTYPE/ENTITY declarations are not allowed"}},
		{name: "external entity", stdin: func(*fixture) string { return xxe }, code: cli.ExitInput, want: []string{"DOCTYPE/ENTITY declarations are not allowed"}},
		{name: "invalid UTF-8", stdin: func(f *fixture) string { return f.domainXML("vm1\xff\xfe", standardDisks) },
			code: cli.ExitInput, want: []string{"not valid UTF-8"}},
		{name: "NUL character reference in a path", stdin: func(f *fixture) string { return f.domainXML("vm1", disk("$ROOT/img/disk.raw&#0;x")) },
			code: cli.ExitInput, want: []string{"domain XML"}},
		{name: "NUL byte in a path", stdin: func(f *fixture) string { return f.domainXML("vm1", disk("$ROOT/img/disk.raw\x00x")) },
			code: cli.ExitInput, want: []string{"domain XML"}},
		{name: "relative path", stdin: func(f *fixture) string { return f.domainXML("vm1", disk("img/disk.raw")) },
			code: cli.ExitInput, want: []string{`"img/disk.raw" is not absolute`}},
		{name: "dot-dot in a path", stdin: func(f *fixture) string { return f.domainXML("vm1", disk("$ROOT/img/../etc/secret")) },
			code: cli.ExitInput, want: []string{`"$ROOT/img/../etc/secret" has a ".." element`}},
		{name: "XML without <name>", stdin: func(f *fixture) string {
			return strings.Replace(f.domainXML("vm1", standardDisks), "<name>vm1</name>", "", 1)
		}, code: cli.ExitInput, want: []string{"domain XML has no <name>"}},
		{name: "XML names another domain", stdin: func(f *fixture) string { return f.domainXML("other", standardDisks) },
			code: cli.ExitInput, want: []string{`XML on stdin is for domain "other"`}},
		{name: "disk in a protected directory", stdin: func(f *fixture) string { return f.domainXML("vm1", standardDisks+disk("$ROOT/etc/secret")) },
			code: cli.ExitFailed, want: []string{"$ROOT/etc/secret", "protected directory"}},
		{name: "symlink into a protected directory",
			setup: func(f *fixture) {
				if err := os.Symlink(f.path("etc/secret"), f.path("img/link.raw")); err != nil {
					t.Fatal(err)
				}
			},
			stdin: func(f *fixture) string { return f.domainXML("vm1", standardDisks+disk("$ROOT/img/link.raw")) },
			code:  cli.ExitFailed, want: []string{"$ROOT/etc/secret", "protected directory"}},
		{name: "image header names a protected file",
			setup: func(f *fixture) { f.qcow2("img/evil.qcow2", f.path("etc/secret"), "raw", imageUID) },
			stdin: func(f *fixture) string {
				return f.domainXML("vm1", standardDisks+`<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$ROOT/img/evil.qcow2'/><target dev='vdc' bus='virtio'/></disk>`)
			},
			code: cli.ExitFailed, want: []string{"disk[target=vdc]", "backing", "$ROOT/etc/secret", "protected directory"}},
		{name: "missing disk", stdin: func(f *fixture) string { return f.domainXML("vm1", standardDisks+disk("$ROOT/img/nope.raw")) },
			code: cli.ExitFailed, want: []string{"$ROOT/img/nope.raw", "no such file or directory"}},
		{name: "qemu.conf is a directory",
			setup: func(f *fixture) {
				os.Remove(f.qemuConf)
				if err := os.Mkdir(f.qemuConf, 0o755); err != nil {
					t.Fatal(err)
				}
			},
			code: cli.ExitConfig, want: []string{"$ROOT/qemu.conf"}},
		{name: "qemu.conf malformed", setup: func(f *fixture) { f.writeQEMUConf("user = \"+64055\"\ngroup = \n") },
			code: cli.ExitConfig, want: []string{"$ROOT/qemu.conf", "line 2"}},
		{name: "qemu.conf user of the wrong type", setup: func(f *fixture) { f.writeQEMUConf("user = 64055\n") },
			code: cli.ExitConfig, want: []string{"$ROOT/qemu.conf", "user"}},
		{name: "qemu.conf empty user", setup: func(f *fixture) { f.writeQEMUConf("user = \"\"\ngroup = \"+64055\"\n") },
			code: cli.ExitConfig, want: []string{"$ROOT/qemu.conf", "empty value"}},
		{name: "qemu.conf unknown user", setup: func(f *fixture) { f.writeQEMUConf("user = \"no-such-user-dachook\"\ngroup = \"+64055\"\n") },
			code: cli.ExitConfig, want: []string{"$ROOT/qemu.conf", "no-such-user-dachook"}},
		{name: "qemu.conf malformed, release", args: release, setup: func(f *fixture) { f.writeQEMUConf("user = [\n") },
			code: cli.ExitConfig, want: []string{"$ROOT/qemu.conf"}},
		{name: "hook config unknown setting", setup: func(f *fixture) { f.writeConf("frobnicate = 1\n") },
			code: cli.ExitConfig, want: []string{"$ROOT/hook.conf", "frobnicate", "unknown setting"}},
		{name: "hook config syntax error", setup: func(f *fixture) { f.writeConf("allow_hardlinks = = 1\n") },
			code: cli.ExitConfig, want: []string{"$ROOT/hook.conf"}},
		{name: "hook config relative state_dir", setup: func(f *fixture) { f.writeConf("state_dir = \"state\"\n") },
			code: cli.ExitConfig, want: []string{"$ROOT/hook.conf", "state_dir", "not an absolute"}},
		{name: "hook config setting twice", setup: func(f *fixture) { f.writeConf("dry_run = 0\ndry_run = 1\n") },
			code: cli.ExitConfig, want: []string{"$ROOT/hook.conf", "dry_run", "more than once"}},
		{name: "hook config malformed, release", args: release, setup: func(f *fixture) { f.writeConf("lock_timeout = \"x\"\n") },
			code: cli.ExitConfig, want: []string{"$ROOT/hook.conf", "lock_timeout"}},
		{name: "hook config is a directory",
			setup: func(f *fixture) {
				os.Remove(f.conf)
				if err := os.Mkdir(f.conf, 0o755); err != nil {
					t.Fatal(err)
				}
			},
			code: cli.ExitConfig, want: []string{"$ROOT/hook.conf"}},
		{name: "config variable is relative", setup: func(f *fixture) { t.Setenv("LIBVIRT_DAC_HOOK_CONFIG", "hook.conf") },
			code: cli.ExitConfig, want: []string{"LIBVIRT_DAC_HOOK_CONFIG", `"hook.conf"`}},
		{name: "dry-run variable is neither 0 nor 1", setup: func(f *fixture) { t.Setenv("LIBVIRT_DAC_HOOK_DRY_RUN", "yes") },
			code: cli.ExitConfig, want: []string{"LIBVIRT_DAC_HOOK_DRY_RUN", `"yes"`}},
		{name: "state lock held",
			setup: func(f *fixture) {
				f.writeConf("lock_timeout = 0\n")
				holdLock(t, f)
			},
			code: cli.ExitState, want: []string{"timed out waiting for the state lock", "$ROOT/state"}},
		{name: "state lock held, release", args: release,
			setup: func(f *fixture) {
				f.writeConf("lock_timeout = 0\n")
				holdLock(t, f)
			},
			code: cli.ExitState, want: []string{"timed out waiting for the state lock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			args := tt.args
			if args == nil {
				args = prepare
			}
			xml := f.domainXML("vm1", standardDisks)
			if tt.stdin != nil {
				xml = tt.stdin(f)
			}
			before := f.owners()
			res := run(strings.NewReader(xml), args...)
			checkHookFailure(t, f, res, tt.code, "vm1", tt.want...)
			f.checkOwners(before)
			f.checkNoEntries()
		})
	}
}

// TestHookEmptyDomainName: libvirt giving no name, and an XML without
// <name>: prepare refuses in one line and changes nothing; plan says the
// same; a release of no name is refused too, as nothing is recorded
// under it.
func TestHookEmptyDomainName(t *testing.T) {
	f := newFixture(t)
	xml := strings.Replace(f.domainXML("vm1", standardDisks), "<name>vm1</name>", "", 1)
	before := f.owners()
	for _, args := range [][]string{{"", "prepare", "begin", "-"}, {"", "release", "end", "-"}} {
		res := run(strings.NewReader(xml), args...)
		if res.code != cli.ExitInput || !strings.Contains(res.stderr, "no <name>") || strings.Count(res.stderr, "\n") != 1 || res.stdout != "" {
			t.Errorf("%v = exit %d, stdout %q, stderr %q; want exit %d, one line saying there is no name", args, res.code, res.stdout, res.stderr, cli.ExitInput)
		}
	}
	f.checkOwners(before)
	f.checkNoEntries()
	res := run(strings.NewReader(xml), "plan", "-")
	if res.code != cli.ExitInput || !strings.Contains(res.stderr, "no <name>") {
		t.Errorf("plan of an XML without <name> = exit %d, stderr %q; want exit %d saying so", res.code, res.stderr, cli.ExitInput)
	}
}

// holdLock takes the state lock as another hook would, until the test ends.
func holdLock(t *testing.T, f *fixture) {
	t.Helper()
	if err := os.MkdirAll(f.state, 0o700); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(filepath.Join(f.state, "lock"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
}

func TestHookDamagedState(t *testing.T) {
	f := newFixture(t)
	if err := os.MkdirAll(f.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.state, "state.json"), []byte(`{"version":1,"entries":[`), 0o600); err != nil {
		t.Fatal(err)
	}
	before := f.owners()
	res := run(strings.NewReader(f.domainXML("vm1", standardDisks)), "vm1", "prepare", "begin", "-")
	checkHookFailure(t, f, res, cli.ExitState, "vm1", "state file damaged", "moved to $ROOT/state/state.json.damaged-")
	f.checkOwners(before)
	aside, _ := filepath.Glob(filepath.Join(f.state, "state.json.damaged-*"))
	if len(aside) != 1 {
		t.Errorf("damaged state kept aside as %v, want one file", aside)
	}
	// Fail closed: while the damaged file is there, prepares are refused
	// (it may hold originals they would record wrongly); releases work.
	res = run(strings.NewReader(f.domainXML("vm1", standardDisks)), "vm1", "prepare", "begin", "-")
	checkHookFailure(t, f, res, cli.ExitState, "vm1", "is kept aside", "restore --state-file")
	f.checkOwners(before)
	res = run(noRead{t}, "vm1", "release", "end", "-")
	if res.code != cli.ExitOK || res.stderr != "" || res.stdout != "" {
		t.Fatalf("release while a damaged state is kept aside = %+v", res)
	}
	// Once the admin has dealt with it, prepares go on.
	if len(aside) == 1 {
		if err := os.Rename(aside[0], aside[0]+".restored"); err != nil {
			t.Fatal(err)
		}
	}
	res = run(strings.NewReader(f.domainXML("vm1", standardDisks)), "vm1", "prepare", "begin", "-")
	if res.code != cli.ExitOK || res.stderr != "" || res.stdout != "" {
		t.Fatalf("prepare after the damaged state was dealt with = %+v", res)
	}
	res = run(noRead{t}, "vm1", "release", "end", "-")
	if res.code != cli.ExitOK || res.stderr != "" || res.stdout != "" {
		t.Fatalf("release = %+v", res)
	}
	f.checkOwners(before)
}

// TestHookJournalCutShort: a state.db cut to 12,000 bytes (a full disk)
// makes no hook call crash: the first moves it aside and fails in one
// line, prepares are refused while it is kept aside, releases work, and
// status reads the copy without crashing either.
func TestHookJournalCutShort(t *testing.T) {
	f := newFixture(t)
	if res := run(strings.NewReader(f.domainXML("vm1", standardDisks)), "vm1", "prepare", "begin", "-"); res.code != cli.ExitOK {
		t.Fatalf("prepare = %+v", res)
	}
	db := filepath.Join(f.state, "state.db")
	if err := os.Truncate(db, 12000); err != nil {
		t.Fatal(err)
	}
	before := f.owners()
	res := run(strings.NewReader(f.domainXML("vm2", standardDisks)), "vm2", "prepare", "begin", "-")
	checkHookFailure(t, f, res, cli.ExitState, "vm2", "state file damaged", "cut short", "moved to $ROOT/state/state.db.damaged-")
	aside, _ := filepath.Glob(db + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("damaged journal kept aside as %v, want one file", aside)
	}
	res = run(strings.NewReader(f.domainXML("vm2", standardDisks)), "vm2", "prepare", "begin", "-")
	checkHookFailure(t, f, res, cli.ExitState, "vm2", "is kept aside", "restore --state-file")
	if res := run(noRead{t}, "vm1", "release", "end", "-"); res.code != cli.ExitOK || res.stdout != "" {
		t.Errorf("release with the damaged journal kept aside = %+v", res)
	}
	res = run(noRead{t}, "status", "--state-file", aside[0])
	if res.code != cli.ExitState || !strings.Contains(res.stderr, "cut short") {
		t.Errorf("status --state-file of the cut journal = exit %d, stderr %q; want exit %d naming the damage", res.code, res.stderr, cli.ExitState)
	}
	f.checkOwners(before)
}

// TestRestoreFromStateFile: owners recorded in a state file kept aside are
// given back by `restore --state-file`, which then marks it restored.
func TestRestoreFromStateFile(t *testing.T) {
	f := newFixture(t)
	before := f.owners()
	res := run(strings.NewReader(f.domainXML("vm1", standardDisks)), "vm1", "prepare", "begin", "-")
	if res.code != cli.ExitOK {
		t.Fatalf("prepare = %+v", res)
	}
	// The state is moved aside as if damaged (it still parses).
	aside := filepath.Join(f.state, "state.db.damaged-test")
	if err := os.Rename(filepath.Join(f.state, "state.db"), aside); err != nil {
		t.Fatal(err)
	}
	res = run(strings.NewReader(""), "restore", "--state-file", aside)
	if res.code != cli.ExitOK {
		t.Fatalf("restore --state-file = %+v", res)
	}
	f.checkOwners(before)
	if _, err := os.Stat(aside + ".restored"); err != nil {
		t.Errorf("state file not marked restored: %v", err)
	}
}

// streamXML is a domain XML of size bytes whose <description> is padding,
// generated as it is read; n counts the bytes handed out.
type streamXML struct {
	head, tail string
	size, n    int64
}

func (s *streamXML) Read(p []byte) (int, error) {
	if s.n >= s.size {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && s.n < s.size {
		switch {
		case s.n < int64(len(s.head)):
			p[k] = s.head[s.n]
		case s.n >= s.size-int64(len(s.tail)):
			p[k] = s.tail[s.n-(s.size-int64(len(s.tail)))]
		default:
			p[k] = 'A'
		}
		k++
		s.n++
	}
	return k, nil
}

func TestHookHugeXMLIsNotReadWhole(t *testing.T) {
	f := newFixture(t)
	const size = 100 << 20
	in := &streamXML{head: "<domain type='kvm'><name>vm1</name><description>", tail: "</description></domain>", size: size}
	before := f.owners()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	res := run(in, "vm1", "prepare", "begin", "-")
	took := time.Since(start)
	runtime.ReadMemStats(&m1)
	checkHookFailure(t, f, res, cli.ExitInput, "vm1", "larger than 16 MiB")
	if in.n > cli.MaxXML+1 {
		t.Errorf("read %d bytes of stdin, want at most MaxXML+1 = %d", in.n, cli.MaxXML+1)
	}
	// Reading into a growing buffer allocates up to four times what it
	// keeps (16 MiB and one byte doubles to 32); reading all 100 MiB would
	// allocate well over 200.
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 5*cli.MaxXML {
		t.Errorf("allocated %d MiB for a %d MiB stdin, want at most %d MiB", alloc>>20, size>>20, 5*cli.MaxXML>>20)
	}
	if took > 10*time.Second {
		t.Errorf("refusing the huge XML took %s", took)
	}
	f.checkOwners(before)
	f.checkNoEntries()
}

func TestHookIgnoredOperations(t *testing.T) {
	f := newFixture(t)
	// A broken config proves nothing is even loaded.
	f.writeConf("frobnicate = 1\n")
	before := f.owners()
	var calls [][]string
	// libvirt's own operations other than prepare and release, even for
	// domains named like a command.
	for _, op := range []string{"started", "stopped", "migrate", "restore", "reconnect", "attach"} {
		for _, name := range []string{"vm1", "plan", "status", "version"} {
			calls = append(calls, []string{name, op, "begin", "-"})
		}
	}
	// "start begin" is checked in cooperative mode; libvirt sends no
	// other start sub-operation, and a later one is ignored.
	calls = append(calls, []string{"vm1", "start", "end", "-"})
	// Operations a later libvirt may add.
	for _, op := range []string{"frobnicate", "", "PREPARE", "prepare ", "release\n"} {
		calls = append(calls, []string{"vm1", op, "begin", "-"})
	}
	for _, args := range calls {
		{
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				res := run(noRead{t}, args...)
				if res.code != cli.ExitOK || res.stdout != "" || res.stderr != "" {
					t.Errorf("Main(%q) = exit %d, stdout %q, stderr %q; want 0 and no output", args, res.code, res.stdout, res.stderr)
				}
			})
		}
	}
	f.checkOwners(before)
	if _, err := os.Stat(f.state); err == nil {
		t.Errorf("an ignored operation created the state directory")
	}
}

func TestArgumentCounts(t *testing.T) {
	f := newFixture(t)
	before := f.owners()
	for _, args := range [][]string{
		{},
		{"vm1"},
		{"vm1", "prepare"},
		{"vm1", "prepare", "begin"},
		{"vm1", "prepare", "begin", "-", "extra"},
		{"vm1", "release", "end", "-", "-"},
		{"-x", "prepare", "begin"},
		{"frobnicate", "--json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			res := run(noRead{t}, args...)
			if res.code != cli.ExitUsage {
				t.Errorf("Main(%q) = exit %d, want %d (stderr %q)", args, res.code, cli.ExitUsage, res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("Main(%q) wrote to stdout: %q", args, res.stdout)
			}
			if !strings.Contains(res.stderr, "Usage:") {
				t.Errorf("Main(%q) stderr has no usage: %q", args, res.stderr)
			}
		})
	}
	f.checkOwners(before)
	f.checkNoEntries()
}

// TestHookPrepareRelease is the good path in process: prepare hands every
// file to QEMU and records it, release gives everything back, and neither
// writes anything to stdout or stderr. A domain called "plan" is still a
// domain when libvirtd calls with four arguments.
func TestHookPrepareRelease(t *testing.T) {
	for _, name := range []string{"vm1", "plan", "status", "restore", "doctor", "version", "help"} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			before := f.owners()
			xml := f.domainXML(name, standardDisks+`
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$ROOT/img/mine.raw'/><target dev='vdc' bus='virtio'/></disk>`)
			res := run(strings.NewReader(xml), name, "prepare", "begin", "-")
			if res.code != cli.ExitOK || res.stdout != "" || res.stderr != "" {
				t.Fatalf("prepare = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
			}
			for _, rel := range []string{"img/disk.raw", "img/top.qcow2", "img/base.raw", "img/mine.raw"} {
				if got := ownerOf(t, f.path(rel)); got != qemuOwner {
					t.Errorf("after prepare %s is %s, want %s", rel, got, qemuOwner)
				}
			}
			if n := len(f.stateEntries()); n != 4 {
				t.Errorf("state holds %d entries after prepare, want 4", n)
			}
			// A second prepare (libvirt retrying) changes nothing.
			res = run(strings.NewReader(xml), name, "prepare", "begin", "-")
			if res.code != cli.ExitOK || res.stdout != "" || res.stderr != "" {
				t.Fatalf("second prepare = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
			}
			res = run(noRead{t}, name, "release", "end", "-")
			if res.code != cli.ExitOK || res.stdout != "" || res.stderr != "" {
				t.Fatalf("release = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
			}
			f.checkOwners(before)
			f.checkNoEntries()
			// Releasing again is harmless.
			res = run(noRead{t}, name, "release", "end", "-")
			if res.code != cli.ExitOK || res.stdout != "" || res.stderr != "" {
				t.Fatalf("second release = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
			}
		})
	}
}
