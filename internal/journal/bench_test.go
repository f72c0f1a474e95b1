package journal

import (
	"fmt"
	"testing"
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
