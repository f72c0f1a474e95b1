package journal

import (
	"fmt"
	"testing"
	"time"
)

// bigEntry is the shared base image of n domains.
func bigEntry(n int) *Entry {
	e := &Entry{Path: "/var/lib/libvirt/images/base.qcow2", Dev: 2049, Ino: 12, TargetUID: 64055, TargetGID: 107, Created: "c7a5fdbd-edaf-9455-926a-d65c16db1809"}
	for i := range n {
		e.Holders = append(e.Holders, Holder{Domain: fmt.Sprintf("storm-%04d", i), UUID: fmt.Sprintf("6f1f3c36-9d39-4a34-8f4e-%012x", i), BootID: "c7a5fdbd-edaf-9455-926a-d65c16db1809", Kind: "backing"})
	}
	return e
}

func BenchmarkEntryCodec(b *testing.B) {
	for _, n := range []int{1, 500} {
		e := bigEntry(n)
		enc, err := encodeEntry(e)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("encode/holders=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := encodeEntry(e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("decode/holders=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				if _, err := decodeEntry(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHoldShared is one hook call's journal work on a base image
// that holders domains share: lock, load, add a holder, save (fsynced),
// unlock, with the host holding others other entries. Its cost should
// follow neither.
func BenchmarkHoldShared(b *testing.B) {
	for _, tc := range []struct{ holders, others int }{{1, 0}, {500, 0}, {1, 10000}} {
		b.Run(fmt.Sprintf("holders=%d/others=%d", tc.holders, tc.others), func(b *testing.B) {
			s, err := Open(b.TempDir(), time.Second)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Lock(); err != nil {
				b.Fatal(err)
			}
			st, err := s.Load()
			if err != nil {
				b.Fatal(err)
			}
			st.Add(bigEntry(tc.holders))
			for i := range tc.others {
				st.Add(&Entry{Path: fmt.Sprintf("/var/lib/images/%05d.qcow2", i), Dev: 2049, Ino: uint64(1000 + i), Holders: []Holder{{Domain: fmt.Sprintf("other-%04d", i/10), BootID: "b"}}})
			}
			if err := s.Save(st); err != nil {
				b.Fatal(err)
			}
			s.Unlock()
			key := bigEntry(0).Key()
			for i := 0; b.Loop(); i++ {
				if err := s.Lock(); err != nil {
					b.Fatal(err)
				}
				st, err := s.Load()
				if err != nil {
					b.Fatal(err)
				}
				e := st.Lookup(key)
				h := Holder{Domain: "bench", BootID: "b"}
				if i%2 == 0 {
					e.Holders = append(e.Holders, h)
				} else {
					e.Holders = e.Holders[:len(e.Holders)-1]
				}
				if err := s.Save(st); err != nil {
					b.Fatal(err)
				}
				s.Unlock()
			}
		})
	}
}
