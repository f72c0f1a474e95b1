package cluster

import (
	"bytes"
	"testing"
)

// FuzzDecode: a record read from shared storage is either refused or
// re-encodes to a record that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"path":"/i/a","ino":3,"uid":1,"gid":2,"target_uid":64055,"target_gid":64055,"holders":[{"host":"h","boot":"b","domain":"d"}]}`))
	f.Add([]byte(`{"version":1,"path":"/i/a","ino":3,"uid":1,"gid":2,"target_uid":0,"target_gid":0,"holders":[]}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decode(b)
		if err != nil {
			return
		}
		enc, err := r.encode()
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		r2, err := decode(enc)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		enc2, _ := r2.encode()
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %s vs %s", enc, enc2)
		}
	})
}
