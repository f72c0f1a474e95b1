package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
)

// TestForgetHostUsage: forget-host needs one host id, and refuses this
// host's own (whose records restore is for).
func TestForgetHostUsage(t *testing.T) {
	f := newFixture(t)
	if err := os.MkdirAll(f.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.state, "host-id"), []byte("me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"forget-host"}, "give the id of the host"},
		{[]string{"forget-host", "a", "b"}, "give the id of the host"},
		{[]string{"forget-host", "me"}, "is this host"},
	} {
		r := run(nil, tc.args...)
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v = exit %d, %q; want exit %d naming %q", tc.args, r.code, r.stderr, cli.ExitUsage, tc.want)
		}
	}
	if r := run(nil, "forget-host", "gone"); r.code != cli.ExitOK {
		t.Errorf("forget-host of a host no record names = exit %d, %q; want 0", r.code, r.stderr)
	}
}
