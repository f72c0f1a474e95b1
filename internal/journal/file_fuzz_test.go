package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// journalBytes is a real journal database: the sample entries and, with
// many, 300 more over several pages.
func journalBytes(tb testing.TB, many bool) []byte {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "state")
	s, err := Open(dir, time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	s.BootID = "b1"
	if err := s.Lock(); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Load(); err != nil {
		tb.Fatal(err)
	}
	if err := s.Save(sample()); err != nil {
		tb.Fatal(err)
	}
	if many {
		st, err := s.Load()
		if err != nil {
			tb.Fatal(err)
		}
		for i := range 300 {
			st.Add(&Entry{Path: fmt.Sprintf("/images/%03d.img", i), Dev: 7, Ino: uint64(i), UID: 1000, TargetUID: 64055,
				Perms: &owner.Perms{Mode: 0o600}, Holders: []Holder{{Domain: fmt.Sprintf("vm%d", i%7), BootID: "b1"}}})
		}
		if err := s.Save(st); err != nil {
			tb.Fatal(err)
		}
	}
	s.Unlock()
	b, err := os.ReadFile(StatePath(dir))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzJournalFile puts arbitrary bytes where the journal database lives
// (state.db as a crash, a full disk or a bad copy can leave it) and runs
// what prepare, release, status and restore do with it. Invariants: no
// crash (a SIGBUS or a panic ends the fuzzer); a journal that cannot be
// read is ErrDamaged and is moved aside, after which the next Load under
// the lock gives an empty journal that takes new entries; reading it
// without the lock moves nothing.
func FuzzJournalFile(f *testing.F) {
	small, big := journalBytes(f, false), journalBytes(f, true)
	f.Add(small)
	f.Add(big)
	f.Add(small[:12000])
	f.Add(big[:len(big)/2])
	f.Add(small[:8192])
	f.Add(small[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		p := StatePath(dir)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		// status and restore --state-file: strict and salvaging reads.
		if _, err := LoadFile(p); err != nil && !errors.Is(err, ErrDamaged) && len(b) > 0 {
			t.Logf("LoadFile: %v", err)
		}
		_, _ = Salvage(p)
		s := &Store{Dir: dir, BootID: "b1", LockTimeout: time.Second, lockFd: -1}
		// Without the lock (VerifyStart, reclaim): queries only.
		if ro, err := s.Load(); err == nil {
			_ = ro.HeldBy("vm1")
			_ = ro.Unheld("b1")
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("a read without the lock moved the journal: %v", err)
		}
		if err := s.Lock(); err != nil {
			t.Fatal(err)
		}
		defer s.Unlock()
		st, err := s.Load()
		if err == nil {
			// A release: every query it makes, then a save.
			for _, e := range st.HeldBy("vm1") {
				e.Holders = nil
			}
			_ = st.Unheld("b1")
			_ = st.ByInode(12)
			_ = st.All()
			st.Add(&Entry{Path: "/new.img", Dev: 99, Ino: 99, Holders: []Holder{{Domain: "vm9", BootID: "b1"}}})
			err = s.Save(st)
		}
		if err == nil {
			return
		}
		if !errors.Is(err, ErrDamaged) {
			t.Fatalf("Load or Save = %v, want nil or ErrDamaged", err)
		}
		if len(s.Damaged()) != 1 {
			t.Fatalf("after %v, Damaged() = %v: want the journal kept aside", err, s.Damaged())
		}
		// The next call works on an empty journal.
		st, err = s.Load()
		if err != nil {
			t.Fatalf("Load after the damaged journal was moved aside = %v", err)
		}
		if n := len(st.All()); n != 0 {
			t.Fatalf("Load after the damaged journal was moved aside has %d entries", n)
		}
		st.Add(&Entry{Path: "/new.img", Dev: 99, Ino: 99, Holders: []Holder{{Domain: "vm9", BootID: "b1"}}})
		if err := s.Save(st); err != nil {
			t.Fatalf("Save to the fresh journal = %v", err)
		}
	})
}
