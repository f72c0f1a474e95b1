package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// locked locks s and loads it, unlocking at the end of the test.
func locked(t *testing.T, s *Store) *State {
	t.Helper()
	if err := s.Lock(); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	t.Cleanup(s.Unlock)
	st, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return st
}

// reload unlocks s, then locks and loads it again: what the next hook sees.
func reload(t *testing.T, s *Store) *State {
	t.Helper()
	s.Unlock()
	return locked(t, s)
}

func keysOf(es []*Entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Key()+" "+e.Path)
	}
	return out
}

// txID is the id of the journal's last committed write transaction.
func txID(t *testing.T, s *Store) int {
	t.Helper()
	var id int
	if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestLazySaveWritesOnlyChanges(t *testing.T) {
	s := newStore(t, time.Second)
	locked(t, s)
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	st := reload(t, s)
	before := txID(t, s)
	// Reading alone writes nothing.
	_ = st.HeldBy("vm1")
	_ = st.All()
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	if after := txID(t, s); after != before {
		t.Errorf("Save of an unchanged state committed a transaction (%d -> %d)", before, after)
	}
	// A change in place through a returned pointer is saved.
	e := st.Lookup("2049:12")
	e.Holders = e.Holders[:1]
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	st = reload(t, s)
	if got := st.HeldBy("vm2"); len(got) != 0 {
		t.Errorf("HeldBy(vm2) after dropping its holder = %v, want none", keysOf(got))
	}
	if got := st.HeldBy("vm1"); len(got) != 2 {
		t.Errorf("HeldBy(vm1) = %v, want both entries", keysOf(got))
	}
}

func TestCloneRollsBack(t *testing.T) {
	s := newStore(t, time.Second)
	locked(t, s)
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	want, err := sample().Encode()
	if err != nil {
		t.Fatal(err)
	}
	st := reload(t, s)
	// Touch one entry before the clone, as prepare does.
	st.Lookup("2049:12").Holders = append(st.Lookup("2049:12").Holders, Holder{Domain: "vm3", BootID: "b1"})
	before := st.Clone()
	before.Lookup("2049:12").Holders = before.Lookup("2049:12").Holders[:2]
	// After the clone: a new entry, a change and a removal of entries the
	// clone never looked at.
	st.Add(&Entry{Path: "/new", Dev: 7, Ino: 7, Holders: []Holder{{Domain: "vm3", BootID: "b1"}}})
	st.Lookup("acl:2049:11:64055").Holders = nil
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	st.Remove("acl:2049:11:64055")
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(before); err != nil {
		t.Fatalf("Save(clone): %v", err)
	}
	got, err := reload(t, s).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("after Save(clone) the journal is\n%s\nwant\n%s", got, want)
	}
	if e := reload(t, s).ByInode(7); len(e) != 0 {
		t.Errorf("rolled-back entry still in the inode index: %v", keysOf(e))
	}
}

// TestQueriesMatchScan checks every query of a lazy State against the same
// query over the entries in memory, on a random journal with unsaved
// changes on top.
func TestQueriesMatchScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	boots := []string{"b0", "b1", "b10", "b"}
	domains := []string{"vm1", "vm2", "vm10", "v", ""}
	randomEntry := func(i int) *Entry {
		e := &Entry{Path: fmt.Sprintf("/img/%d", i), Dev: uint64(r.IntN(3)), Ino: uint64(r.IntN(20)), TargetUID: uint32(r.IntN(2)), Created: "b0"}
		if r.IntN(4) == 0 {
			e.ACL = json.RawMessage(`{"added":true}`)
		}
		for range r.IntN(4) {
			e.Holders = append(e.Holders, Holder{Domain: domains[r.IntN(len(domains))], BootID: boots[r.IntN(len(boots))]})
		}
		return e
	}
	mem := &State{Version: FormatVersion}
	for i := range 200 {
		if e := randomEntry(i); mem.Lookup(e.Key()) == nil {
			mem.Add(e)
		}
	}
	s := newStore(t, time.Second)
	locked(t, s)
	if err := s.Save(mem); err != nil {
		t.Fatal(err)
	}
	st := reload(t, s)
	// Unsaved changes, in both views alike.
	for i := range 40 {
		switch r.IntN(3) {
		case 0:
			if e := randomEntry(1000 + i); mem.Lookup(e.Key()) == nil && st.Lookup(e.Key()) == nil {
				mem.Add(e)
				st.Add(cloneEntry(e))
			}
		case 1:
			all := mem.All()
			k := all[r.IntN(len(all))].Key()
			mem.Remove(k)
			st.Remove(k)
		case 2:
			all := mem.All()
			k := all[r.IntN(len(all))].Key()
			h := Holder{Domain: domains[r.IntN(len(domains))], BootID: boots[r.IntN(len(boots))]}
			mem.Lookup(k).Holders = append(mem.Lookup(k).Holders, h)
			st.Lookup(k).Holders = append(st.Lookup(k).Holders, h)
		}
	}
	check := func(name string, a, b []*Entry) {
		t.Helper()
		sortEntries(a)
		if diff := cmp.Diff(keysOf(a), keysOf(b)); diff != "" {
			t.Errorf("%s differs (-scan +lazy):\n%s", name, diff)
		}
	}
	for round := range 2 {
		check("All", mem.All(), st.All())
		for _, d := range domains {
			check("HeldBy("+d+")", mem.HeldBy(d), st.HeldBy(d))
		}
		for _, b := range append(boots, "none") {
			check("Unheld("+b+")", mem.Unheld(b), st.Unheld(b))
		}
		for ino := range uint64(21) {
			check(fmt.Sprint("ByInode(", ino, ")"), mem.ByInode(ino), st.ByInode(ino))
			for dev := range uint64(3) {
				check(fmt.Sprint("Grants(", dev, ino, ")"), mem.Grants(dev, ino), st.Grants(dev, ino))
			}
		}
		if round == 0 {
			// The same answers from the indexes after a save.
			if err := s.Save(st); err != nil {
				t.Fatal(err)
			}
			st = reload(t, s)
		}
	}
}

func TestMigratesStateJSON(t *testing.T) {
	s := newStore(t, time.Second)
	old, err := sample().Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Dir, stateName)
	if err := os.WriteFile(p, old, 0o600); err != nil {
		t.Fatal(err)
	}
	st := locked(t, s)
	got, err := st.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, old) {
		t.Errorf("journal after import =\n%s\nwant the old state.json\n%s", got, old)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state.json still in place after import (stat: %v)", err)
	}
	if kept, err := os.ReadFile(p + MigratedSuffix); err != nil || !bytes.Equal(kept, old) {
		t.Errorf("state.json%s = %q, %v; want the old content", MigratedSuffix, kept, err)
	}
	if got := st.HeldBy("vm2"); len(got) != 1 || got[0].Path != "/var/lib/images/base.qcow2" {
		t.Errorf("HeldBy(vm2) after import = %v", keysOf(got))
	}
	// A crash after the import but before the rename imports again: the
	// same entries, no duplicates.
	s.Unlock()
	if err := os.Rename(p+MigratedSuffix, p); err != nil {
		t.Fatal(err)
	}
	st = locked(t, s)
	if n := len(st.All()); n != 2 {
		t.Errorf("after a second import: %d entries, want 2", n)
	}
}

func TestDamagedJournalIsSetAside(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, s *Store)
		// atLoad: Load itself reports the damage; otherwise the query
		// that reads the bad entry marks the state and Save reports it.
		atLoad bool
		// many: a journal of 400 more entries, many pages.
		many bool
	}{
		{"garbage file", func(t *testing.T, s *Store) {
			if err := os.WriteFile(StatePath(s.Dir), bytes.Repeat([]byte("x"), 8192), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"cut short to 12,000 bytes", cutTo(12000), true, false},
		{"cut to its meta pages", cutTo(8192), true, false},
		{"many pages cut to 12,000 bytes", cutTo(12000), true, true},
		{"last page cut short", cutTo(-1), true, true},
		{"meta pages zeroed", func(t *testing.T, s *Store) {
			f, err := os.OpenFile(StatePath(s.Dir), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 8192), 0); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"undecodable entry", func(t *testing.T, s *Store) {
			rawPut(t, s, "2049:12", []byte{entryFormat, 8, 'r', 'e', 'l', 'a', 't', 'i', 'v', 'e'})
		}, false, false},
		{"entry under a wrong key", func(t *testing.T, s *Store) {
			b, err := encodeEntry(&Entry{Path: "/x", Dev: 1, Ino: 1, Holders: []Holder{{Domain: "vm1", BootID: "b1"}}})
			if err != nil {
				t.Fatal(err)
			}
			rawPut(t, s, "2049:12", b)
		}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, time.Second)
			locked(t, s)
			if err := s.Save(sample()); err != nil {
				t.Fatal(err)
			}
			if tt.many {
				st := reload(t, s)
				for i := range 400 {
					st.Add(&Entry{Path: fmt.Sprintf("/images/%03d.img", i), Dev: 7, Ino: uint64(i), Holders: []Holder{{Domain: "vm9", BootID: "b1"}}})
				}
				if err := s.Save(st); err != nil {
					t.Fatal(err)
				}
			}
			s.Unlock()
			tt.damage(t, s)
			// Without the lock (status, VerifyStart), a query reports
			// the damage and moves nothing.
			if tt.atLoad {
				ro, err := s.Load()
				if err != nil {
					t.Fatalf("Load without the lock = %v", err)
				}
				if got := ro.HeldBy("vm1"); len(got) != 0 {
					t.Errorf("HeldBy on a damaged journal = %d entries", len(got))
				}
				if _, err := LoadFile(StatePath(s.Dir)); !errors.Is(err, ErrDamaged) {
					t.Errorf("LoadFile of the damaged journal = %v, want ErrDamaged", err)
				}
				if _, err := Salvage(StatePath(s.Dir)); !errors.Is(err, ErrDamaged) {
					t.Errorf("Salvage of the damaged journal = %v, want ErrDamaged", err)
				}
			}
			if err := s.Lock(); err != nil {
				t.Fatal(err)
			}
			defer s.Unlock()
			st, err := s.Load()
			if !tt.atLoad {
				if err != nil {
					t.Fatalf("Load = %v, want the damage found by the query", err)
				}
				_ = st.HeldBy("vm1")
				err = s.Save(st)
			}
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("got %v, want ErrDamaged", err)
			}
			d := s.Damaged()
			if len(d) != 1 || !strings.Contains(err.Error(), d[0]) {
				t.Fatalf("Damaged() = %v, error %q: want one file kept aside, named in the error", d, err)
			}
			if _, err := LoadFile(d[0]); !errors.Is(err, ErrDamaged) {
				t.Errorf("LoadFile(%s) = %v, want ErrDamaged", d[0], err)
			}
			st, err = s.Load()
			if err != nil || len(st.All()) != 0 {
				t.Errorf("Load after setting aside = %v; want an empty journal", err)
			}
		})
	}
}

// cutTo truncates the journal to n bytes (n < 0: |n| bytes short of the
// pages its meta page counts).
func cutTo(n int64) func(t *testing.T, s *Store) {
	return func(t *testing.T, s *Store) {
		t.Helper()
		p := StatePath(s.Dir)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if n < 0 {
			// Short of the pages the newest meta page counts.
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			m := parseMeta(b, 0)
			if m1 := parseMeta(b[m.pageSize:], int64(m.pageSize)); m1.txid > m.txid {
				m = m1
			}
			n += int64(m.pgid * m.pageSize)
		}
		if fi.Size() <= n {
			t.Fatalf("journal of %d bytes is too small to cut to %d", fi.Size(), n)
		}
		if err := os.Truncate(p, n); err != nil {
			t.Fatal(err)
		}
	}
}

// rawPut writes b under key in the entries bucket, bypassing every check.
func rawPut(t *testing.T, s *Store, key string, b []byte) {
	t.Helper()
	db, err := bolt.Open(StatePath(s.Dir), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put([]byte(key), b) }); err != nil {
		t.Fatal(err)
	}
}

func TestDebrisRemoved(t *testing.T) {
	s := newStore(t, time.Second)
	// What a writer of an earlier version killed between creating its
	// temporary file and renaming it leaves.
	debris := filepath.Join(s.Dir, ".state.json1234567890")
	if err := os.WriteFile(debris, []byte(`{"version":1,"entr`), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(s.Dir, ".state.json-notes")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	locked(t, s)
	if _, err := os.Stat(debris); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file of a killed writer still there after Load (stat: %v)", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("Load removed %s, which no writer makes: %v", other, err)
	}
}

func TestBounds(t *testing.T) {
	s := newStore(t, time.Second)
	st := locked(t, s)
	e := &Entry{Path: "/var/lib/images/base.qcow2", Dev: 1, Ino: 1}
	for i := range 20000 {
		e.Holders = append(e.Holders, Holder{Domain: fmt.Sprintf("domain-%05d", i), UUID: "c7a5fdbd-edaf-9455-926a-d65c16db1809", BootID: "c7a5fdbd-edaf-9455-926a-d65c16db1809", Kind: "backing"})
	}
	st.Add(e)
	err := s.Save(st)
	if err == nil || !strings.Contains(err.Error(), "too many domains share this file") || !strings.Contains(err.Error(), e.Path) {
		t.Errorf("Save of an oversized entry = %v, want an error naming the file and the cause", err)
	}
	st = reload(t, s)
	if n := len(st.All()); n != 0 {
		t.Errorf("a refused Save left %d entries", n)
	}
	for i := range MaxTxEntries + 1 {
		st.Add(&Entry{Path: "/f", Dev: 1, Ino: uint64(i)})
	}
	if err := s.Save(st); err == nil || !strings.Contains(err.Error(), fmt.Sprint(MaxTxEntries)) {
		t.Errorf("Save of %d entries at once = %v, want the limit of %d", MaxTxEntries+1, err, MaxTxEntries)
	}
}

func TestRawPathRoundTrip(t *testing.T) {
	s := newStore(t, time.Second)
	st := locked(t, s)
	p := "/var/lib/images/\xff\xfe.qcow2"
	st.Add(&Entry{Path: p, Dev: 1, Ino: 2, Holders: []Holder{{Domain: "vm1", BootID: "b"}}})
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	if got := reload(t, s).Lookup("1:2"); got == nil || got.Path != p {
		t.Errorf("Lookup after Save of a non-UTF-8 path = %+v, want path %q", got, p)
	}
}

// TestTimedOutWaiterReleases checks that a Lock that gave up never holds
// the lock: when the holder lets go, the abandoned flock is granted and
// dropped, and the next Lock gets it.
func TestTimedOutWaiterReleases(t *testing.T) {
	a := newStore(t, time.Second)
	if err := a.Lock(); err != nil {
		t.Fatal(err)
	}
	b := &Store{Dir: a.Dir, LockTimeout: 50 * time.Millisecond, lockFd: -1}
	if err := b.Lock(); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Lock while held = %v, want ErrLockTimeout", err)
	}
	a.Unlock()
	c := &Store{Dir: a.Dir, LockTimeout: 30 * time.Second, lockFd: -1}
	if err := c.Lock(); err != nil {
		t.Fatalf("Lock after the holder let go, with a waiter that gave up: %v", err)
	}
	c.Unlock()
}

// TestLockExcludes runs writers in goroutines, each with its own Store (its
// own open file description, like a hook process), incrementing a counter
// entry: a lost update means two held the lock at once.
func TestLockExcludes(t *testing.T) {
	dir := newStore(t, time.Second).Dir
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			s := &Store{Dir: dir, BootID: "b", LockTimeout: 30 * time.Second, lockFd: -1}
			errs <- func() error {
				if err := s.Lock(); err != nil {
					return err
				}
				defer s.Unlock()
				st, err := s.Load()
				if err != nil {
					return err
				}
				e := st.Lookup("1:1")
				if e == nil {
					e = &Entry{Path: "/counter", Dev: 1, Ino: 1}
					st.Add(e)
				}
				e.Holders = append(e.Holders, Holder{Domain: "d", BootID: "b"})
				return s.Save(st)
			}()
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s := &Store{Dir: dir, LockTimeout: time.Second, lockFd: -1}
	if got := len(locked(t, s).Lookup("1:1").Holders); got != n {
		t.Errorf("counter = %d after %d locked increments", got, n)
	}
}

// TestStateAfterUnlock: a State used after its lock was released is a
// caller's mistake, not damage: Save refuses, and the journal stays.
func TestStateAfterUnlock(t *testing.T) {
	s := newStore(t, time.Second)
	locked(t, s)
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	st := reload(t, s)
	s.Unlock()
	_ = st.HeldBy("vm1")
	err := s.Save(st)
	if err == nil || errors.Is(err, ErrDamaged) {
		t.Fatalf("Save of a state after Unlock = %v, want a plain error", err)
	}
	if d := s.Damaged(); len(d) != 0 {
		t.Errorf("a misused state set the journal aside: %v", d)
	}
	if n := len(reload(t, s).All()); n != 2 {
		t.Errorf("journal holds %d entries, want the 2 saved", n)
	}
}

// TestLoadWithoutLock: a read-only view sees the journal, refuses Save,
// and keeps nothing open that would block the next hook in this process.
func TestLoadWithoutLock(t *testing.T) {
	s := newStore(t, time.Second)
	if st, err := s.Load(); err != nil || len(st.All()) != 0 {
		t.Fatalf("read-only Load with no journal yet = %v; want an empty view", err)
	}
	locked(t, s)
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	s.Unlock()
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.HeldBy("vm2"); len(got) != 1 {
		t.Errorf("read-only HeldBy(vm2) = %v, want the base image", keysOf(got))
	}
	st.Lookup("2049:12").Holders = nil
	if err := s.Save(st); err == nil {
		t.Errorf("Save of a state loaded without the lock succeeded")
	}
	other := &Store{Dir: s.Dir, LockTimeout: 200 * time.Millisecond, lockFd: -1}
	if n := len(locked(t, other).Lookup("2049:12").Holders); n != 2 {
		t.Errorf("after a refused read-only Save: %d holders, want 2", n)
	}
}

func TestSalvage(t *testing.T) {
	s := newStore(t, time.Second)
	locked(t, s)
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	s.Unlock()
	if st, err := Salvage(StatePath(s.Dir)); err != nil || len(st.All()) != 2 {
		t.Fatalf("Salvage of a sound journal = %v; want its 2 entries", err)
	}
	rawPut(t, s, "2049:12", []byte{entryFormat, 1})
	if _, err := LoadFile(StatePath(s.Dir)); !errors.Is(err, ErrDamaged) {
		t.Errorf("LoadFile with one bad entry = %v, want ErrDamaged", err)
	}
	st, err := Salvage(StatePath(s.Dir))
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "2049:12") {
		t.Errorf("Salvage error = %v, want ErrDamaged naming the bad entry", err)
	}
	if st == nil || len(st.All()) != 1 || st.All()[0].Key() != "acl:2049:11:64055" {
		t.Errorf("Salvage = %v, want the one entry that still decodes", st)
	}
}

// TestHelperKilledWriter is the writer TestKilledWriter kills: it saves
// rounds in which every entry gets the same holder, forever.
func TestHelperKilledWriter(t *testing.T) {
	dir := os.Getenv("JOURNAL_KILLED_WRITER_DIR")
	if dir == "" {
		t.Skip("run by TestKilledWriter")
	}
	s := &Store{Dir: dir, BootID: "b", LockTimeout: time.Minute, lockFd: -1}
	for round := 0; ; round++ {
		if err := s.Lock(); err != nil {
			t.Fatal(err)
		}
		st, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			key := fmt.Sprintf("1:%d", i)
			e := st.Lookup(key)
			if e == nil {
				e = &Entry{Path: fmt.Sprintf("/f/%d", i), Dev: 1, Ino: uint64(i)}
				st.Add(e)
			}
			e.Holders = []Holder{{Domain: fmt.Sprintf("round-%d", round), BootID: "b"}}
		}
		if err := s.Save(st); err != nil {
			t.Fatal(err)
		}
		s.Unlock()
	}
}

// TestKilledWriter kills a writer at random instants, mid-transaction
// included, and checks the journal after each kill: it opens, nothing is
// set aside, every entry is from the same transaction, and the indexes
// agree with the entries.
func TestKilledWriter(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(3, 4))
	seen := map[string]bool{}
	for kill := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKilledWriter$")
		cmd.Env = append(os.Environ(), "JOURNAL_KILLED_WRITER_DIR="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+r.IntN(80)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait() // killed: its status says so
		s := &Store{Dir: dir, BootID: "b", LockTimeout: 5 * time.Second, lockFd: -1}
		st := locked(t, s)
		if d := s.Damaged(); len(d) != 0 {
			t.Fatalf("kill %d: journal set aside: %v", kill, d)
		}
		all := st.All()
		rounds := map[string]int{}
		for _, e := range all {
			if len(e.Holders) != 1 {
				t.Fatalf("kill %d: %s has %d holders", kill, e.Path, len(e.Holders))
			}
			rounds[e.Holders[0].Domain]++
		}
		if len(rounds) > 1 {
			t.Fatalf("kill %d: entries from more than one transaction: %v", kill, rounds)
		}
		for d, n := range rounds {
			seen[d] = true
			if got := len(st.HeldBy(d)); got != n {
				t.Errorf("kill %d: HeldBy(%s) = %d entries, All has %d", kill, d, got, n)
			}
		}
		if err := s.Save(st); err != nil {
			t.Fatalf("kill %d: Save after the kill: %v", kill, err)
		}
		s.Unlock()
	}
	if len(seen) < 2 {
		t.Errorf("the writer committed in fewer than 2 of the kills (%v): the kills tested too little", seen)
	}
}

// TestEntryPerms: an entry with recorded permissions round-trips through
// the store; one stored by an earlier version (format 1, written here
// byte by byte) reads with unknown permissions, and an entry without
// them is still written in format 1, exactly as before.
func TestEntryPerms(t *testing.T) {
	old := []byte{1, 6, '/', 'a', '.', 'i', 'm', 'g', 1, 12, 0x80, 0x01, 3, 0xb7, 0xf4, 0x03, 0xe2, 0x07, 0, 0, 0, 0, 0, 0, 0,
		1, 3, 'v', 'm', '1', 0, 1, 'b', 0}
	e, err := decodeEntry(old)
	if err != nil {
		t.Fatalf("decodeEntry(format 1) = %v", err)
	}
	if e.Perms != nil || e.UID != 128 || e.GID != 3 || e.TargetUID != 64055 || len(e.Holders) != 1 || e.Holders[0].BootID != "b" {
		t.Fatalf("decodeEntry(format 1) = %+v, want uid 128, gid 3, target 64055, one holder, unknown perms", e)
	}
	enc, err := encodeEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, old) {
		t.Errorf("encodeEntry of an entry without perms = %x, want the format 1 bytes %x", enc, old)
	}

	s := newStore(t, time.Second)
	st := locked(t, s)
	aclBytes := []byte{2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	st.Add(&Entry{Path: "/p.img", Dev: 1, Ino: 2, UID: 0, TargetUID: 64055, Perms: &owner.Perms{Mode: 0o4600}, Created: "b"})
	st.Add(&Entry{Path: "/q.img", Dev: 1, Ino: 3, UID: 0, TargetUID: 64055, Perms: &owner.Perms{Mode: 0o600, ACL: aclBytes}, Created: "b"})
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	got := reload(t, s)
	for key, want := range map[string]owner.Perms{"1:2": {Mode: 0o4600}, "1:3": {Mode: 0o600, ACL: aclBytes}} {
		e := got.Lookup(key)
		if e == nil || e.Perms == nil || !e.Perms.Equal(want) {
			t.Errorf("Lookup(%s).Perms after reload = %+v, want %+v", key, e, want)
		}
	}
	// Mode bits beyond 07777, or an ACL the kernel would not give, are
	// damage.
	for _, bad := range []*owner.Perms{{Mode: 0o100600}, {Mode: 0o600, ACL: []byte{2, 0, 0, 0, 1}}} {
		b, err := encodeEntry(&Entry{Path: "/p.img", Perms: bad})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeEntry(b); !errors.Is(err, ErrDamaged) {
			t.Errorf("decodeEntry with perms %+v = %v, want ErrDamaged", bad, err)
		}
	}
}

// TestFullDiskIsNotDamage: a save that fails because the filesystem is
// full fails, but leaves the journal in place (it is as it was), so the
// next call reads it again; only pages that do not add up are damage.
func TestFullDiskIsNotDamage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	s, err := Open(filepath.Join(dir, "state"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st := locked(t, s)
	st.Add(&Entry{Path: "/kept.img", Dev: 1, Ino: 1, Holders: []Holder{{Domain: "vm1", BootID: "b1"}}})
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	var serr error
	for i := 0; i < 50 && serr == nil; i++ {
		st = reload(t, s)
		for j := range 200 {
			st.Add(&Entry{Path: fmt.Sprintf("/images/%d-%d.img", i, j), Dev: 2, Ino: uint64(i*1000 + j), Holders: []Holder{{Domain: strings.Repeat("d", 200), BootID: "b1"}}})
		}
		serr = s.Save(st)
	}
	if serr == nil {
		t.Fatal("the small filesystem never filled up")
	}
	t.Logf("save on the full filesystem: %v", serr)
	if errors.Is(serr, ErrDamaged) || len(s.Damaged()) != 0 {
		t.Fatalf("Save on a full filesystem = %v, Damaged() = %v: want an error that is not damage, nothing moved aside", serr, s.Damaged())
	}
	st = reload(t, s)
	if e := st.Lookup("1:1"); e == nil || e.Path != "/kept.img" {
		t.Errorf("after the failed save the journal lost its entry: %+v", e)
	}
}

func TestSystemError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("write x: %w", unix.ENOSPC), true},
		{errors.New("file resize error: no space left on device"), true},
		{errors.New("file sync error: input/output error"), true},
		{&os.PathError{Op: "writeat", Path: "state.db", Err: errors.New("negative offset")}, false},
		{errors.New("page 7 already freed"), false},
	} {
		if got := systemError(tc.err); got != tc.want {
			t.Errorf("systemError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestHostIDIgnoresSymlink: a symlink planted at STATE/host-id is neither
// read (its target's first line would be published in owner marks) nor
// written through; the hook makes an id of its own in its place.
func TestHostIDIgnoresSymlink(t *testing.T) {
	s := newStore(t, time.Second)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("root-password-hash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(s.Dir, "host-id")); err != nil {
		t.Fatal(err)
	}
	id := s.HostID()
	if id == "root-password-hash" || id == "" {
		t.Fatalf("HostID() = %q, read through the symlink", id)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root-password-hash\n" {
		t.Errorf("the symlink's target now holds %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(s.Dir, "host-id")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("host-id after HostID is %v (%v), want a regular file", fi.Mode(), err)
	}
	if again := s.HostID(); again != id {
		t.Errorf("HostID() again = %q, want %q kept", again, id)
	}
}

// TestStateJSONSymlinkNotImported: a symlink planted at STATE/state.json
// (to a state file listing /etc/shadow as given to QEMU by its "original
// owner") is not followed and imported: it is set aside as damage, and
// the journal stays empty.
func TestStateJSONSymlinkNotImported(t *testing.T) {
	s := newStore(t, time.Second)
	forged, err := (&State{Version: FormatVersion, mem: []*Entry{{Path: "/etc/shadow", Dev: 1, Ino: 2, UID: 1000, TargetUID: 64055, Holders: []Holder{{Domain: "vm1", BootID: "b1"}}}}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "forged.json")
	if err := os.WriteFile(target, forged, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(s.Dir, stateName)); err != nil {
		t.Fatal(err)
	}
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	_, err = s.Load()
	s.Unlock()
	if !errors.Is(err, ErrDamaged) || len(s.Damaged()) != 1 {
		t.Fatalf("Load with a symlinked state.json = %v, Damaged() = %v; want it set aside as damage", err, s.Damaged())
	}
	st := locked(t, s)
	if n := len(st.All()); n != 0 {
		t.Errorf("the journal holds %d entries from the symlink's target", n)
	}
}
