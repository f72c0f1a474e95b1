package watch

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
)

// FuzzParse: whatever bytes a read returns, parse never reads past them,
// and every event it returns carries a handle no longer than its record.
func FuzzParse(f *testing.F) {
	f.Add(sampleEvent("disk.img"))
	f.Add(append(sampleEvent("a"), sampleEvent("b")...))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ev := range parse(b) {
			if len(ev.obj.handle) > len(b) || len(ev.dir.handle) > len(b) || len(ev.name) > len(b) {
				t.Fatalf("event larger than its buffer: %+v", ev)
			}
		}
	})
}

// FuzzParseRequest: a request accepted names a record by its file name.
func FuzzParseRequest(f *testing.F) {
	f.Add("sync " + inventory.NameOf("vm1") + " 42\n")
	f.Fuzz(func(t *testing.T, line string) {
		req, err := parseRequest(line)
		if err != nil {
			return
		}
		if !inventory.IsRecordName(req.name) || strings.ContainsAny(req.name, "/\x00") {
			t.Fatalf("parseRequest(%q) accepted name %q", line, req.name)
		}
	})
}

// sampleEvent is an ATTRIB event as the kernel writes it: metadata, a
// DFID_NAME record, a FID record and a pidfd record.
func sampleEvent(name string) []byte {
	fidRec := func(typ byte, handle []byte, name string) []byte {
		body := make([]byte, 4+8+8)
		body[0] = typ
		binary.NativeEndian.PutUint32(body[12:], uint32(len(handle)))
		binary.NativeEndian.PutUint32(body[16:], 1)
		body = append(body, handle...)
		if name != "" {
			body = append(body, append([]byte(name), 0)...)
		}
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		binary.NativeEndian.PutUint16(body[2:], uint16(len(body)))
		return body
	}
	info := fidRec(2, []byte{1, 2, 3, 4, 5, 6, 7, 8}, name)
	info = append(info, fidRec(1, []byte{9, 10, 11, 12, 13, 14, 15, 16}, "")...)
	pid := make([]byte, 8)
	pid[0] = 4
	binary.NativeEndian.PutUint16(pid[2:], 8)
	binary.NativeEndian.PutUint32(pid[4:], 0xffffffff)
	info = append(info, pid...)
	meta := make([]byte, metaLen)
	binary.NativeEndian.PutUint32(meta[0:], uint32(metaLen+len(info)))
	meta[4] = 3
	binary.NativeEndian.PutUint16(meta[6:], uint16(metaLen))
	binary.NativeEndian.PutUint64(meta[8:], 4) // FAN_ATTRIB
	binary.NativeEndian.PutUint32(meta[16:], 0xffffffff)
	return append(meta, info...)
}

// TestParseSample: the sample parses into the event it describes.
func TestParseSample(t *testing.T) {
	evs := parse(sampleEvent("disk.img"))
	if len(evs) != 1 || !evs[0].hasDir || !evs[0].hasObj || evs[0].name != "disk.img" || evs[0].pidfd != -1 || len(evs[0].obj.handle) != 8 {
		t.Fatalf("parse(sample) = %+v", evs)
	}
}
