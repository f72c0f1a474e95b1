package remembered

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

func TestParseLabel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want owner.UIDGID
		err  bool
	}{
		{"+1000:+100", owner.UIDGID{UID: 1000, GID: 100}, false},
		{"+0:+0", owner.UIDGID{UID: 0, GID: 0}, false},
		{"0:0", owner.UIDGID{UID: 0, GID: 0}, false},
		{"+1000:+100\x00", owner.UIDGID{UID: 1000, GID: 100}, false},
		{"1000", owner.UIDGID{}, true},
		{"+:+1", owner.UIDGID{}, true},
		{"alice:users", owner.UIDGID{}, true},
		{"+4294967296:+0", owner.UIDGID{}, true},
		{"", owner.UIDGID{}, true},
	} {
		got, err := ParseLabel(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseLabel(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrBadLabel) {
			t.Errorf("ParseLabel(%q) error %v does not wrap ErrBadLabel", tc.in, err)
		}
	}
}

func FuzzParseLabel(f *testing.F) {
	f.Add("+1000:+100")
	f.Add("+0:+0\x00")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseLabel(s)
		if err != nil {
			return
		}
		// Whatever parsed prints back as the same ids.
		if back, err := ParseLabel(o.String()); err != nil || back != o {
			t.Errorf("ParseLabel(%q) = %v, which does not round-trip (%v, %v)", s, o, back, err)
		}
	})
}

// TestLabel: libvirt's remembered owner is read only with an outstanding
// labelling made on this boot.
func TestLabel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("trusted.* xattrs need CAP_SYS_ADMIN")
	}
	const boot = 1796156681
	dir := t.TempDir()
	set := func(name string, kv map[string]string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for k, v := range kv {
			if err := unix.Setxattr(p, k, []byte(v), 0); err != nil {
				t.Skipf("no trusted xattrs on %s: %v", dir, err)
			}
		}
		return p
	}
	now := "1796156681"
	for _, tc := range []struct {
		name string
		kv   map[string]string
		want owner.UIDGID
		ok   bool
	}{
		{"labelled", map[string]string{XattrDAC: "+1000:+100", XattrRefDAC: "2", XattrTimestamp: now}, owner.UIDGID{UID: 1000, GID: 100}, true},
		{"utmp a second off", map[string]string{XattrDAC: "+1000:+100", XattrRefDAC: "1", XattrTimestamp: "1796156682"}, owner.UIDGID{UID: 1000, GID: 100}, true},
		{"older format", map[string]string{XattrDAC: "+7:+8", XattrRefDAC: "1", XattrTimestamp: "1b6e2c3a-7d35-4a58-9b2a-7e3e0c6f2d11-1796156681"}, owner.UIDGID{UID: 7, GID: 8}, true},
		{"previous boot", map[string]string{XattrDAC: "+1000:+100", XattrRefDAC: "1", XattrTimestamp: "1796000000"}, owner.UIDGID{}, false},
		{"no timestamp", map[string]string{XattrDAC: "+1000:+100", XattrRefDAC: "1"}, owner.UIDGID{}, false},
		{"no refs", map[string]string{XattrDAC: "+1000:+100", XattrTimestamp: now}, owner.UIDGID{}, false},
		{"refs zero", map[string]string{XattrDAC: "+1000:+100", XattrRefDAC: "0", XattrTimestamp: now}, owner.UIDGID{}, false},
		{"bad label", map[string]string{XattrDAC: "alice", XattrRefDAC: "1", XattrTimestamp: now}, owner.UIDGID{}, false},
		{"none", nil, owner.UIDGID{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := set(strings.ReplaceAll(tc.name, " ", "-"), tc.kv)
			got, ok := Label(p, boot)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Label = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if _, ok := Label(filepath.Join(dir, "gone"), boot); ok {
		t.Error("Label of a missing file: ok")
	}
}

// TestBootTime: the kernel's boot time is in the past and within the
// uptime /proc reports.
func TestBootTime(t *testing.T) {
	b := BootTime()
	if b <= 0 {
		t.Skip("no btime in /proc/stat")
	}
	if now := time.Now().Unix(); b > now || b < now-10*365*24*3600 {
		t.Errorf("BootTime() = %d, now %d", b, now)
	}
}
