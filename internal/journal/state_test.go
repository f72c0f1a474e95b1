package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// sample is a state with one chown entry held by two domains and one ACL
// entry, in the order Encode writes them (sorted by path).
func sample() *State {
	return &State{
		Version: FormatVersion,
		mem: []*Entry{
			{
				Path: "/var/lib/images", Dev: 2049, Ino: 11, UID: 0, GID: 0, TargetUID: 64055,
				ACL:     json.RawMessage(`{"added":true}`),
				Holders: []Holder{{Domain: "vm1", BootID: "b1", Kind: "parent-dir"}},
				Created: "b1",
			},
			{
				Path: "/var/lib/images/base.qcow2", Dev: 2049, Ino: 12, UID: 1000, GID: 1000,
				TargetUID: 64055, TargetGID: 64055, Shared: true,
				Holders: []Holder{
					{Domain: "vm1", UUID: "c7a5fdbd-edaf-9455-926a-d65c16db1809", BootID: "b1", Kind: "backing"},
					{Domain: "vm2", BootID: "b1", Kind: "disk"},
				},
				Created: "b0",
			},
		},
	}
}

// stateOpts compares states by content: the index is derived.
var stateOpts = cmp.Options{cmpopts.IgnoreUnexported(State{})}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	want := sample()
	b, err := want.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(sample)): %v\n%s", err, b)
	}
	// Encode indents the raw ACL along with everything else; compare it
	// as JSON, not as bytes.
	for _, e := range got.mem {
		if e.ACL != nil {
			var buf bytes.Buffer
			if err := json.Compact(&buf, e.ACL); err != nil {
				t.Fatal(err)
			}
			e.ACL = buf.Bytes()
		}
	}
	if diff := cmp.Diff(want, got, stateOpts); diff != "" {
		t.Errorf("Decode(Encode(sample)) differs (-want +got):\n%s", diff)
	}
	for _, e := range want.mem {
		if got.Lookup(e.Key()) == nil {
			t.Errorf("Lookup(%q) = nil after Decode", e.Key())
		}
	}
}

func TestEncodeSortsAndIsDeterministic(t *testing.T) {
	a := sample()
	b := sample()
	b.mem[0], b.mem[1] = b.mem[1], b.mem[0]
	ea, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	eb, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ea, eb) {
		t.Errorf("Encode depends on entry order:\n%s\n---\n%s", ea, eb)
	}
	empty, err := (&State{}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n \"version\": 1,\n \"entries\": []\n}\n"; string(empty) != want {
		t.Errorf("Encode(empty) = %q, want %q", empty, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	entry := func(path string) string {
		return `{"path":"` + path + `","dev":1,"ino":2,"uid":0,"gid":0,"target_uid":1,"target_gid":1,"holders":[],"created_boot_id":"b"}`
	}
	state := func(entries ...string) string {
		return `{"version":1,"entries":[` + strings.Join(entries, ",") + `]}`
	}
	tests := []struct {
		name string
		in   string
		msg  string // part of the error message
	}{
		{"empty", ``, "EOF"},
		{"not json", `hello`, "invalid character"},
		{"truncated", state(entry("/a"))[:40], "unexpected EOF"},
		{"relative path", state(entry("images/a.img")), `"images/a.img", not absolute`},
		{"empty path", state(entry("")), `path "", not absolute`},
		{"unclean path", state(entry("/var/lib/../../etc/shadow")), "not absolute and clean"},
		{"trailing slash", state(entry("/var/lib/")), "not absolute and clean"},
		{"duplicate inode", state(entry("/a"), entry("/b")), "appears twice"},
		{"null entry", state("null"), "entry 0 is null"},
		{"version 0", `{"entries":[]}`, "version 0"},
		{"version 2", `{"version":2,"entries":[]}`, "version 2"},
		{"version as string", `{"version":"1","entries":[]}`, "cannot unmarshal"},
		{"trailing data", state() + `{}`, "trailing data"},
		{"trailing garbage", state() + ` x`, "trailing data"},
		{"trailing close bracket", state() + `]`, "trailing data"},
		{"trailing close brace", state() + "\n}", "trailing data"},
		{"unknown top-level field", `{"version":1,"entries":[],"extra":1}`, `unknown field "extra"`},
		{"unknown entry field", state(strings.Replace(entry("/a"), `"dev"`, `"mode":420,"dev"`, 1)), `unknown field "mode"`},
		{"unknown holder field", state(strings.Replace(entry("/a"), `"holders":[]`, `"holders":[{"domain":"d","boot_id":"b","pid":1}]`, 1)), `unknown field "pid"`},
		{"negative uid", state(strings.Replace(entry("/a"), `"uid":0`, `"uid":-1`, 1)), "cannot unmarshal"},
		{"uid over 32 bits", state(strings.Replace(entry("/a"), `"uid":0`, `"uid":4294967296`, 1)), "cannot unmarshal"},
		{"too large", `{"version":1,"entries":[]}` + strings.Repeat(" ", MaxStateSize), "is more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%.80q) = %+v, want error", tt.in, st)
			}
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("Decode(%.80q) = %v, want ErrDamaged", tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Decode(%.80q) = %q, want it to mention %q", tt.in, err, tt.msg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Decode error is not one line: %q", err)
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		entries int
	}{
		{"empty state", `{"version":1,"entries":[]}`, 0},
		{"null entries", `{"version":1,"entries":null}`, 0},
		{"surrounding space", " \n{\"version\":1,\"entries\":[]}\n\n", 0},
		// An ACL entry and a chown entry of the same inode have different
		// keys, so both may be recorded.
		{"acl and chown of one inode", `{"version":1,"entries":[
			{"path":"/d","dev":1,"ino":2,"uid":0,"gid":0,"target_uid":5,"target_gid":0,"holders":[],"created_boot_id":"b"},
			{"path":"/d","dev":1,"ino":2,"uid":0,"gid":0,"target_uid":5,"target_gid":0,"acl":{},"holders":[],"created_boot_id":"b"}]}`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode = %v, want success", err)
			}
			if len(st.mem) != tt.entries {
				t.Errorf("Decode gave %d entries, want %d", len(st.mem), tt.entries)
			}
		})
	}
}

func TestStateAddLookupRemoveClone(t *testing.T) {
	st := sample()
	c := st.Clone()
	key := st.mem[1].Key()
	st.mem[1].Holders[0].Domain = "changed"
	if got := c.Lookup(key).Holders[0].Domain; got != "vm1" {
		t.Errorf("Clone shares holders with the original: holder is %q after changing the original", got)
	}
	st.Remove(key)
	if st.Lookup(key) != nil || len(st.mem) != 1 {
		t.Errorf("after Remove(%q): Lookup = %v, %d entries, want nil and 1", key, st.Lookup(key), len(st.mem))
	}
	st.Remove("no-such-key") // must not panic or remove anything
	if len(st.mem) != 1 {
		t.Errorf("Remove of a missing key changed the state: %d entries", len(st.mem))
	}
	e := &Entry{Path: "/x", Dev: 9, Ino: 9}
	st.Add(e)
	if st.Lookup(e.Key()) != e {
		t.Errorf("Lookup after Add did not find the entry")
	}
	if c.Lookup(key) == nil {
		t.Errorf("Remove on the original removed from the clone")
	}
}

func newStore(t *testing.T, timeout time.Duration) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state"), timeout)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	s := newStore(t, time.Second)
	fi, err := os.Stat(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("state dir mode = %o, want 700", perm)
	}
	if s.BootID == "" {
		t.Errorf("Open left BootID empty")
	}
}

func TestSaveLoad(t *testing.T) {
	s := newStore(t, time.Second)
	lockLoad := func() *State {
		t.Helper()
		if err := s.Lock(); err != nil {
			t.Fatal(err)
		}
		st, err := s.Load()
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		return st
	}
	st := lockLoad()
	if st.Version != FormatVersion || len(st.All()) != 0 {
		t.Fatalf("Load of a missing state = %d entries, version %d; want empty version %d", len(st.All()), st.Version, FormatVersion)
	}
	want := sample()
	if err := s.Save(want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	s.Unlock()
	fi, err := os.Stat(StatePath(s.Dir))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("journal mode = %o, want 600", perm)
	}
	got := lockLoad()
	defer s.Unlock()
	again, err := got.Encode()
	if err != nil {
		t.Fatal(err)
	}
	wantEnc, err := sample().Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, wantEnc) {
		t.Errorf("Encode(Load()) differs from Encode of what was saved:\n%s\n---\n%s", again, wantEnc)
	}
	if len(got.All()) != 2 || got.Lookup(want.mem[1].Key()) == nil {
		t.Errorf("Load after Save = %d entries, want the 2 saved", len(got.All()))
	}
	s.Unlock()
	// LoadFile reads the journal, also when named by the state.json of
	// earlier versions.
	for _, p := range []string{StatePath(s.Dir), filepath.Join(s.Dir, stateName)} {
		lf, err := LoadFile(p)
		if err != nil {
			t.Fatalf("LoadFile(%s): %v", p, err)
		}
		enc, err := lf.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, wantEnc) {
			t.Errorf("LoadFile(%s) differs from what was saved:\n%s\n---\n%s", p, enc, wantEnc)
		}
	}
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != dbName && e.Name() != lockName {
			t.Errorf("unexpected file %s in the state dir after Save", e.Name())
		}
	}
}

func TestLoadMovesDamagedAside(t *testing.T) {
	s := newStore(t, time.Second)
	p := filepath.Join(s.Dir, stateName)
	damaged := []byte(`{"version":1,"entries":[{"path":"relative"`)
	if err := os.WriteFile(p, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Load without the lock of a damaged file = %v, want ErrDamaged", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("Load without the lock moved the damaged file: %v", err)
	}
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	defer s.Unlock()
	_, err := s.Load()
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("Load of a damaged file = %v, want ErrDamaged", err)
	}
	if _, serr := os.Stat(p); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("damaged %s still in place (stat: %v)", p, serr)
	}
	aside, _ := filepath.Glob(p + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("want one %s.damaged-* file, found %v", p, aside)
	}
	if !strings.Contains(err.Error(), aside[0]) {
		t.Errorf("Load error %q does not say where the file went (%s)", err, aside[0])
	}
	kept, err := os.ReadFile(aside[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kept, damaged) {
		t.Errorf("file kept aside = %q, want the damaged content %q", kept, damaged)
	}
	if _, err := LoadFile(aside[0]); !errors.Is(err, ErrDamaged) {
		t.Errorf("LoadFile(%s) = %v, want ErrDamaged", aside[0], err)
	}
	// The next Load starts afresh, without losing the file kept aside.
	st, err := s.Load()
	if err != nil || len(st.All()) != 0 {
		t.Errorf("Load after moving aside = %v, %v; want an empty state", st, err)
	}
	if _, err := os.Stat(aside[0]); err != nil {
		t.Errorf("file kept aside is gone: %v", err)
	}
}

func TestLockTimeout(t *testing.T) {
	a := newStore(t, time.Second)
	if err := a.Lock(); err != nil {
		t.Fatalf("first Lock: %v", err)
	}
	// A second Store is a second open file description, exactly like a
	// second hook process: flock conflicts between them.
	b := &Store{Dir: a.Dir, BootID: a.BootID, LockTimeout: 150 * time.Millisecond, lockFd: -1}
	start := time.Now()
	err := b.Lock()
	waited := time.Since(start)
	if !errors.Is(err, ErrLockTimeout) {
		b.Unlock()
		t.Fatalf("Lock while held = %v, want ErrLockTimeout", err)
	}
	if waited < 150*time.Millisecond || waited > 2*time.Second {
		t.Errorf("Lock gave up after %s, want about 150ms", waited)
	}
	if !strings.Contains(err.Error(), a.Dir) {
		t.Errorf("lock timeout error %q does not name the state dir", err)
	}
	if b.lockFd != -1 {
		t.Errorf("failed Lock left lockFd = %d", b.lockFd)
	}

	// Released while b waits: b gets it well before its timeout.
	b.LockTimeout = 5 * time.Second
	go func() {
		time.Sleep(100 * time.Millisecond)
		a.Unlock()
	}()
	start = time.Now()
	if err := b.Lock(); err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	if w := time.Since(start); w > 2*time.Second {
		t.Errorf("Lock took %s after the holder released it", w)
	}
	b.Unlock()
	b.Unlock() // idempotent
}

func TestLockZeroTimeout(t *testing.T) {
	a := newStore(t, 0)
	if err := a.Lock(); err != nil {
		t.Fatalf("Lock with timeout 0 on a free lock: %v", err)
	}
	defer a.Unlock()
	b := &Store{Dir: a.Dir, LockTimeout: 0, lockFd: -1}
	if err := b.Lock(); !errors.Is(err, ErrLockTimeout) {
		b.Unlock()
		t.Errorf("Lock with timeout 0 on a held lock = %v, want ErrLockTimeout", err)
	}
}

func TestLockRefusesSymlink(t *testing.T) {
	s := newStore(t, time.Second)
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(target, filepath.Join(s.Dir, lockName)); err != nil {
		t.Fatal(err)
	}
	if err := s.Lock(); err == nil {
		s.Unlock()
		t.Errorf("Lock followed a symlinked lock file")
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lock created the symlink's target %s", target)
	}
}

// TestKeyFormat: keys are stored in state.db and checked against the
// entry each names, so their spelling is part of the on-disk format.
func TestKeyFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Entry
		want string
	}{
		{Entry{Dev: 2049, Ino: 131}, "2049:131"},
		{Entry{Dev: 0, Ino: 0}, "0:0"},
		{Entry{Dev: 1<<64 - 1, Ino: 1<<64 - 1}, "18446744073709551615:18446744073709551615"},
		{Entry{Dev: 2049, Ino: 131, TargetUID: 64055, ACL: []byte(`{}`)}, "acl:2049:131:64055"},
	} {
		if got := tc.e.Key(); got != tc.want {
			t.Errorf("Key of %+v = %q, want %q", tc.e, got, tc.want)
		}
	}
}
