package image

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzRead feeds arbitrary bytes to probeRead and to ReadFormat for every
// format with a header, checking the guarantees callers rely on: no panic,
// bounded reads, bounded names without NUL, a bounded extent list.
func FuzzRead(f *testing.F) {
	f.Add(withBacking(qcow2Hdr(3, 16, 1024), 512, 4, "base"))
	f.Add(func() []byte {
		b := withBacking(qcow2Hdr(2, 12, 1024), 512, 10, "base.qcow2")
		off := withExt(b, 72, qcow2ExtBackingFormat, 5, "qcow2")
		withExt(b, off, qcow2ExtDataFile, 4, "data")
		return b
	}())
	f.Add(func() []byte {
		b := qcow2Hdr(3, 12, 1024)
		be.PutUint64(b[72:], qcow2IncompatDataFile)
		withExt(b, 112, qcow2ExtDataFile, 8, "img.data")
		return b
	}())
	f.Add(withBacking(qcow2Hdr(1, 0, 128), 48, 8, "base.raw"))
	f.Add(withQEDBacking(qedHdr(qedFeatureBacking|qedFeatureNoProbe, 256), 64, 8, "base.raw"))
	f.Add(kdmvHdr(1, 2048, 1, 1024, descHead+"createType=\"monolithicSparse\"\nparentFileNameHint=\"p.vmdk\"\n"))
	f.Add(kdmvHdr(1, 0, 1, 1024, string(vmdkText("twoGbMaxExtentSparse", "RW 2048 SPARSE \"a.vmdk\"\n"))))
	f.Add(vmdkText("twoGbMaxExtentFlat", "parentFileNameHint=\"/b.vmdk\"\nRW 2048 FLAT \"a-f001.vmdk\" 0\nRW 10 VMFS \"v\"\n"))
	f.Add([]byte("COWD\x01\x00\x00\x00"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, info Info, n int64) {
			t.Helper()
			if n > maxRead {
				t.Errorf("%s read %d bytes, limit %d", what, n, maxRead)
			}
			if len(info.BackingName) > maxName || len(info.DataFile) > maxName || len(info.BackingFormat) > maxName {
				t.Errorf("%s returned a name over %d bytes", what, maxName)
			}
			if len(info.Extents) > maxExtents {
				t.Errorf("%s returned %d extents, limit %d", what, len(info.Extents), maxExtents)
			}
			names := append([]string{info.BackingName, info.BackingFormat, info.DataFile}, info.Extents...)
			for _, s := range names {
				if strings.IndexByte(s, 0) >= 0 {
					t.Errorf("%s returned a name with NUL: %q", what, s)
				}
			}
			for _, e := range info.Extents {
				if e == "" || len(e) > maxExtentName {
					t.Errorf("%s returned extent name of %d bytes", what, len(e))
				}
			}
			if info.BackingName == "" && info.BackingFormat != "" {
				t.Errorf("%s returned backing format %q without a backing name", what, info.BackingFormat)
			}
		}

		cr := &countingReader{r: bytes.NewReader(data)}
		info, _ := probeRead(cr, int64(len(data)))
		check("Read", info, cr.n)
		switch info.Format {
		case FormatRaw, FormatQcow2, FormatQcow, FormatQED, FormatVMDK:
		default:
			t.Errorf("Read returned format %q", info.Format)
		}

		for _, format := range []string{FormatQcow2, FormatQcow, FormatQED, FormatVMDK} {
			cr := &countingReader{r: bytes.NewReader(data)}
			info, err := ReadFormat(cr, int64(len(data)), format)
			check("ReadFormat "+format, info, cr.n)
			if err == nil && info.Format != format {
				t.Errorf("ReadFormat(%s) returned format %q", format, info.Format)
			}
		}
	})
}
