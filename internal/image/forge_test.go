package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Hand-forged headers: what qemu-img will not write.

var (
	be = binary.BigEndian
	le = binary.LittleEndian
)

// qcow2Hdr returns a size-byte qcow2 image of the given version and cluster
// bits with a v3 header length of 112 and nothing else set.
func qcow2Hdr(version, clusterBits uint32, size int) []byte {
	b := make([]byte, size)
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], version)
	be.PutUint32(b[20:], clusterBits)
	if version >= 3 {
		be.PutUint32(b[100:], 112)
	}
	return b
}

// withBacking sets the backing name fields and writes name at off.
func withBacking(b []byte, off uint64, n uint32, name string) []byte {
	be.PutUint64(b[8:], off)
	be.PutUint32(b[16:], n)
	if off+uint64(len(name)) <= uint64(len(b)) {
		copy(b[off:], name)
	}
	return b
}

// withExt writes a qcow2 header extension at off and returns the offset
// after it (padded to 8).
func withExt(b []byte, off int, magic, n uint32, data string) int {
	be.PutUint32(b[off:], magic)
	be.PutUint32(b[off+4:], n)
	copy(b[off+8:], data)
	return off + 8 + (len(data)+7)&^7
}

// qedHdr returns a size-byte QED image with 4 KiB clusters and a one
// cluster header.
func qedHdr(features uint64, size int) []byte {
	b := make([]byte, size)
	copy(b, "QED\x00")
	le.PutUint32(b[4:], 4096)
	le.PutUint32(b[8:], 4)
	le.PutUint32(b[12:], 1)
	le.PutUint64(b[16:], features)
	return b
}

func withQEDBacking(b []byte, off, n uint32, name string) []byte {
	le.PutUint32(b[56:], off)
	le.PutUint32(b[60:], n)
	if int(off)+len(name) <= len(b) {
		copy(b[off:], name)
	}
	return b
}

// kdmvHdr returns a sparse VMDK header with the given capacity and
// descriptor offset (sectors), padded to size, with text at 0x200.
func kdmvHdr(version uint32, capacity, descOff uint64, size int, text string) []byte {
	b := make([]byte, size)
	copy(b, "KDMV")
	le.PutUint32(b[4:], version)
	le.PutUint64(b[12:], capacity)
	le.PutUint64(b[20:], 128)
	le.PutUint64(b[28:], descOff)
	le.PutUint64(b[36:], 20)
	if text != "" {
		copy(b[0x200:], text)
	}
	return b
}

const descHead = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"

func vmdkText(createType, rest string) []byte {
	return []byte(descHead + "createType=\"" + createType + "\"\n" + rest)
}

// countingReader counts the bytes a parser asks for.
type countingReader struct {
	r *bytes.Reader
	n int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n += int64(len(p))
	return c.r.ReadAt(p, off)
}

func TestReadForged(t *testing.T) {
	manyExtents := strings.Repeat("RW 1 FLAT \"x\" 0\n", maxExtents+1)
	longName := strings.Repeat("n", 600)

	tests := []struct {
		name    string
		data    []byte
		size    int64 // 0: len(data)
		want    Info
		wantErr error
	}{
		// Whatever qemu-img would never write.
		{name: "negative size", data: []byte{}, size: -1, wantErr: ErrMalformed},
		{name: "empty file", data: []byte{}, want: Info{Format: "raw"}},
		{name: "qcow2 magic in a file too short to be qcow2", data: []byte("QFI\xfb\x00\x00\x00\x03"), want: Info{Format: "raw"}},
		{name: "qcow2 version 0 is not qcow2", data: qcow2Hdr(0, 16, 4096), want: Info{Format: "raw"}},
		{name: "qcow2 version 4", data: qcow2Hdr(4, 16, 4096), want: Info{Format: "qcow2"}, wantErr: ErrUnsupported},
		{name: "qcow2 cluster bits 63", data: qcow2Hdr(3, 63, 4096), want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 cluster bits 8", data: qcow2Hdr(3, 8, 4096), want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 header length huge", data: func() []byte {
			b := qcow2Hdr(3, 16, 4096)
			be.PutUint32(b[100:], 1<<31)
			return b
		}(), want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 header length too short", data: func() []byte {
			b := qcow2Hdr(3, 16, 4096)
			be.PutUint32(b[100:], 72)
			return b
		}(), want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 backing name cut at NUL", data: withBacking(qcow2Hdr(3, 16, 4096), 512, 10, "abc\x00defghi"),
			want: Info{Format: "qcow2", BackingName: "abc"}},
		{name: "qcow2 backing name 1023 bytes", data: withBacking(qcow2Hdr(2, 16, 4096), 1024, 1023, strings.Repeat("b", 1023)),
			want: Info{Format: "qcow2", BackingName: strings.Repeat("b", 1023)}},
		{name: "qcow2 backing name 1024 bytes", data: withBacking(qcow2Hdr(3, 16, 4096), 512, 1024, strings.Repeat("b", 1024)),
			want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 backing name size 4 GiB", data: withBacking(qcow2Hdr(3, 16, 4096), 512, 0xffffffff, "x"),
			want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 backing offset past EOF", data: withBacking(qcow2Hdr(3, 16, 4096), 60000, 10, ""),
			want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 backing offset 2^64-1", data: withBacking(qcow2Hdr(3, 16, 4096), 1<<64-1, 10, ""),
			want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 backing name crosses the first cluster", data: withBacking(qcow2Hdr(3, 9, 4096), 500, 100, ""),
			want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 file shorter than its size claims", data: withBacking(qcow2Hdr(3, 16, 4096), 8192, 10, ""), size: 16384,
			want: Info{Format: "qcow2"}, wantErr: io.ErrUnexpectedEOF},
		{name: "qcow2 v2 extensions are read", data: func() []byte {
			b := withBacking(qcow2Hdr(2, 16, 4096), 512, 4, "base")
			withExt(b, 72, qcow2ExtBackingFormat, 3, "raw")
			return b
		}(), want: Info{Format: "qcow2", BackingName: "base", BackingFormat: "raw"}},
		{name: "qcow2 extensions are padded to 8 bytes", data: func() []byte {
			b := withBacking(qcow2Hdr(3, 16, 4096), 512, 4, "base")
			off := withExt(b, 112, 0x12345678, 5, "abcde")
			withExt(b, off, qcow2ExtBackingFormat, 5, "qcow2")
			return b
		}(), want: Info{Format: "qcow2", BackingName: "base", BackingFormat: "qcow2"}},
		{name: "qcow2 extension walk stops at end marker", data: func() []byte {
			b := withBacking(qcow2Hdr(3, 16, 4096), 512, 4, "base")
			off := withExt(b, 112, qcow2ExtEnd, 0, "")
			withExt(b, off, qcow2ExtBackingFormat, 3, "raw")
			return b
		}(), want: Info{Format: "qcow2", BackingName: "base"}},
		{name: "qcow2 data file ignored without the feature bit", data: func() []byte {
			b := qcow2Hdr(3, 16, 4096)
			withExt(b, 112, qcow2ExtDataFile, 4, "data")
			return b
		}(), want: Info{Format: "qcow2"}},
		{name: "qcow2 data file with the feature bit", data: func() []byte {
			b := qcow2Hdr(3, 16, 4096)
			be.PutUint64(b[72:], qcow2IncompatDataFile)
			withExt(b, 112, qcow2ExtDataFile, 4, "data")
			return b
		}(), want: Info{Format: "qcow2", DataFile: "data"}},
		{name: "qcow2 extension length 4 GiB", data: func() []byte {
			b := qcow2Hdr(3, 16, 4096)
			withExt(b, 112, 1, 0xffffffff, "")
			return b
		}(), want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 extension runs into the backing name", data: func() []byte {
			b := withBacking(qcow2Hdr(3, 16, 4096), 128, 4, "base")
			withExt(b, 112, 1, 16, "")
			return b
		}(), want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 backing format 16 bytes", data: func() []byte {
			b := withBacking(qcow2Hdr(3, 16, 4096), 512, 4, "base")
			withExt(b, 112, qcow2ExtBackingFormat, 16, "qcow2qcow2qcow2q")
			return b
		}(), want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 data file name 4 KiB", data: func() []byte {
			b := qcow2Hdr(3, 16, 8192)
			withExt(b, 112, qcow2ExtDataFile, 4096, strings.Repeat("d", 4096))
			return b
		}(), want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 empty extensions filling a 2 MiB cluster", data: func() []byte {
			b := qcow2Hdr(3, 21, 2<<20)
			for off := 112; off+8 <= len(b); off += 8 {
				be.PutUint32(b[off:], 0x01010101)
			}
			return b
		}(), want: Info{Format: "qcow2"}, wantErr: ErrMalformed},
		{name: "qcow2 empty extensions then end marker", data: func() []byte {
			b := qcow2Hdr(3, 16, 65536)
			for off := 112; off < 60000; off += 8 {
				be.PutUint32(b[off:], 0x01010101)
			}
			return b
		}(), want: Info{Format: "qcow2"}},
		{name: "qcow2 extension area cut by EOF reads as end marker", data: qcow2Hdr(3, 16, 116), want: Info{Format: "qcow2"}},
		{name: "qcow v1 backing", data: func() []byte {
			b := withBacking(qcow2Hdr(1, 0, 512), 48, 4, "base")
			return b
		}(), want: Info{Format: "qcow", BackingName: "base"}},
		{name: "qcow v1 backing name 2000 bytes", data: withBacking(qcow2Hdr(1, 0, 4096), 48, 2000, ""),
			want: Info{Format: "qcow"}, wantErr: ErrMalformed},
		{name: "qcow v1 backing offset past EOF", data: withBacking(qcow2Hdr(1, 0, 512), 1<<40, 4, ""),
			want: Info{Format: "qcow"}, wantErr: ErrMalformed},

		{name: "qed magic in a file too short to be qed", data: []byte("QED\x00"), want: Info{Format: "raw"}},
		{name: "qed backing flag without name", data: qedHdr(qedFeatureBacking, 4096), want: Info{Format: "qed"}},
		{name: "qed backing name 5000 bytes", data: func() []byte {
			b := qedHdr(qedFeatureBacking, 16384)
			le.PutUint32(b[12:], 4)
			return withQEDBacking(b, 64, 5000, strings.Repeat("q", 5000))
		}(), want: Info{Format: "qed"}, wantErr: ErrMalformed},
		{name: "qed backing name outside the header", data: withQEDBacking(qedHdr(qedFeatureBacking, 8192), 4000, 200, ""),
			want: Info{Format: "qed"}, wantErr: ErrMalformed},
		{name: "qed backing name offset wraps", data: withQEDBacking(qedHdr(qedFeatureBacking, 4096), 0xffffffff, 2, ""),
			want: Info{Format: "qed"}, wantErr: ErrMalformed},
		{name: "qed backing name past EOF", data: withQEDBacking(qedHdr(qedFeatureBacking, 100), 64, 100, ""),
			want: Info{Format: "qed"}, wantErr: ErrMalformed},
		{name: "qed cluster size not a power of two", data: func() []byte {
			b := qedHdr(0, 4096)
			le.PutUint32(b[4:], 5000)
			return b
		}(), want: Info{Format: "qed"}, wantErr: ErrMalformed},
		{name: "qed header size overflows", data: func() []byte {
			b := qedHdr(0, 4096)
			le.PutUint32(b[4:], 64<<20)
			le.PutUint32(b[12:], 1000)
			return b
		}(), want: Info{Format: "qed"}, wantErr: ErrMalformed},
		{name: "qed unknown feature", data: qedHdr(0x100, 4096), want: Info{Format: "qed"}, wantErr: ErrUnsupported},
		{name: "qed no-probe backing name cut at NUL", data: withQEDBacking(qedHdr(qedFeatureBacking|qedFeatureNoProbe, 4096), 64, 8, "raw\x00junk"),
			want: Info{Format: "qed", BackingName: "raw", BackingFormat: "raw"}},

		{name: "vmdk sparse without descriptor", data: kdmvHdr(1, 2048, 0, 512, ""), want: Info{Format: "vmdk"}},
		{name: "vmdk sparse version 4", data: kdmvHdr(4, 2048, 1, 4096, ""), want: Info{Format: "vmdk"}, wantErr: ErrUnsupported},
		{name: "vmdk sparse file shorter than its header", data: []byte("KDMV\x01\x00\x00\x00"), want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk sparse parent hint", data: kdmvHdr(1, 2048, 1, 8192, descHead+"createType=\"monolithicSparse\"\nparentFileNameHint=\"p.vmdk\"\n"),
			want: Info{Format: "vmdk", BackingName: "p.vmdk", BackingFormat: "vmdk"}},
		{name: "vmdk embedded descriptor beyond EOF", data: kdmvHdr(1, 0, 1<<60, 4096, ""),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk embedded descriptor names extents", data: kdmvHdr(1, 0, 1, 8192, string(vmdkText("twoGbMaxExtentSparse",
			"parentFileNameHint=\"p.vmdk\"\nRW 2048 SPARSE \"a.vmdk\"\nRW 2048 SPARSE \"b.vmdk\"\n"))),
			want: Info{Format: "vmdk", BackingName: "p.vmdk", BackingFormat: "vmdk", Extents: []string{"a.vmdk", "b.vmdk"}}},
		{name: "vmdk hint without closing quote", data: vmdkText("monolithicFlat", "parentFileNameHint=\"abc\n"),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk hint cut short", data: vmdkText("monolithicFlat", "parentFileNameHint"),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk hint 5000 bytes", data: vmdkText("monolithicFlat", "parentFileNameHint=\""+strings.Repeat("h", 5000)+"\"\n"),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk hint beyond the 10 KiB QEMU reads", data: vmdkText("monolithicFlat", "#"+strings.Repeat("c", 11000)+"\nparentFileNameHint=\"far\"\n"),
			want: Info{Format: "vmdk"}},
		{name: "vmdk empty hint", data: vmdkText("monolithicFlat", "parentFileNameHint=\"\"\n"), want: Info{Format: "vmdk"}},
		{name: "vmdk too many extents", data: vmdkText("twoGbMaxExtentFlat", manyExtents),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk flat extent without offset", data: vmdkText("monolithicFlat", "RW 2048 FLAT \"x.raw\"\n"),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk flat extent with negative offset", data: vmdkText("monolithicFlat", "RW 2048 FLAT \"x.raw\" -1\n"),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk sparse extent with offset", data: vmdkText("twoGbMaxExtentSparse", "RW 2048 SPARSE \"x.vmdk\" 0\n"),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk no createType", data: []byte(descHead + "RW 2048 FLAT \"x.raw\" 0\n"),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk descriptor with monolithicSparse createType", data: vmdkText("monolithicSparse", ""),
			want: Info{Format: "vmdk"}, wantErr: ErrUnsupported},
		{name: "vmdk NUL ends the descriptor", data: []byte(descHead + "\x00createType=\"monolithicFlat\"\n"),
			want: Info{Format: "vmdk"}, wantErr: ErrMalformed},
		{name: "vmdk extent lines QEMU skips", data: vmdkText("twoGbMaxExtentFlat",
			"RDONLY 2048 FLAT \"ro\" 0\nNOACCESS 2048 FLAT \"na\" 0\nRW 0 FLAT \"zero\" 0\nRW -5 FLAT \"neg\" 0\n"+
				"RW 2048 ZERO \"z\"\nRW 2048 FLAT \"\" 0\nRWX 2048 FLAT \"rwx\" 0\nRW 2048 FLAT \"ok\" 0\n"),
			want: Info{Format: "vmdk", Extents: []string{"ok"}}},
		{name: "vmdk extent name cut at 511 bytes like sscanf", data: vmdkText("twoGbMaxExtentSparse", "RW 2048 SPARSE \""+longName+"\"\n"),
			want: Info{Format: "vmdk", Extents: []string{longName[:511]}}},
		{name: "vmdk extent line spanning lines like sscanf", data: vmdkText("twoGbMaxExtentSparse", "RW\n2048\nSPARSE \"x.vmdk\"\n"),
			want: Info{Format: "vmdk", Extents: []string{"x.vmdk"}}},
		{name: "vmdk extent with windows line ends and tabs", data: vmdkText("monolithicFlat", "RW\t2048\tFLAT\t\"x.raw\"\t0\r\n"),
			want: Info{Format: "vmdk", Extents: []string{"x.raw"}}},
		{name: "vmdk extent sector count overflows", data: vmdkText("monolithicFlat", "RW 99999999999999999999999 FLAT \"x.raw\" 0\n"),
			want: Info{Format: "vmdk", Extents: []string{"x.raw"}}},
		{name: "text without version line is raw", data: []byte("# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 1 FLAT \"x\" 0\n"),
			want: Info{Format: "raw"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.size
			if size == 0 {
				size = int64(len(tc.data))
			}
			cr := &countingReader{r: bytes.NewReader(tc.data)}
			got, err := probeRead(cr, size)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("probeRead() error = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Errorf("probeRead() error = %v, want nil", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("probeRead() info differs (-want +got):\n%s", diff)
			}
			if cr.n > maxRead {
				t.Errorf("probeRead() read %d bytes, limit %d", cr.n, maxRead)
			}
		})
	}
}

func TestReadFormat(t *testing.T) {
	qcow2 := withBacking(qcow2Hdr(3, 16, 4096), 512, 4, "base")
	descNoVersion := []byte("createType=\"monolithicFlat\"\nRW 1 FLAT \"x.raw\" 0\n")
	tests := []struct {
		name    string
		data    []byte
		format  string
		want    Info
		wantErr error
	}{
		{name: "qcow2 as qcow2", data: qcow2, format: "qcow2", want: Info{Format: "qcow2", BackingName: "base"}},
		{name: "qcow2 as raw is not read", data: qcow2, format: "raw", want: Info{Format: "raw"}},
		{name: "qcow2 as luks is not read", data: qcow2, format: "luks", want: Info{Format: "luks"}},
		{name: "qcow2 as qed", data: qcow2, format: "qed", wantErr: ErrWrongFormat},
		{name: "qcow2 as vmdk", data: qcow2, format: "vmdk", wantErr: ErrWrongFormat},
		{name: "raw as qcow2", data: make([]byte, 4096), format: "qcow2", wantErr: ErrWrongFormat},
		{name: "unknown format name", data: qcow2, format: "qcow3", wantErr: ErrUnsupported},
		{name: "vmdk descriptor the probe misses", data: descNoVersion, format: "vmdk",
			want: Info{Format: "vmdk", Extents: []string{"x.raw"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadFormat(bytes.NewReader(tc.data), int64(len(tc.data)), tc.format)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("ReadFormat(%s) error = %v, want %v", tc.format, err, tc.wantErr)
				}
			} else if err != nil {
				t.Errorf("ReadFormat(%s) error = %v, want nil", tc.format, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ReadFormat(%s) info differs (-want +got):\n%s", tc.format, diff)
			}
		})
	}
}

// TestReadLargeDescriptorsAreLinear guards against sscanf emulation that
// rescans whitespace from every line start: a 1 MiB descriptor of blank
// lines must not take quadratic time.
func TestReadLargeDescriptorsAreLinear(t *testing.T) {
	for name, filler := range map[string]string{
		"newlines":      "\n",
		"spaced lines":  " \n",
		"RW lines":      "RW\n",
		"digit lines":   "RW 1234567890123\n",
		"quoted lines":  "RW 1 FLAT \"",
		"comment lines": "#\n",
	} {
		t.Run(name, func(t *testing.T) {
			data := vmdkText("twoGbMaxExtentFlat", strings.Repeat(filler, (1<<20-200)/len(filler)))
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = probeRead(bytes.NewReader(data), int64(len(data)))
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				// Fail now rather than hang until the test binary's timeout.
				t.Fatalf("Read of a %d-byte descriptor of %q did not finish in 5s", len(data), filler)
			}
		})
	}
}
