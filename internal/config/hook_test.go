package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/virconf"
)

func TestDefaultHook(t *testing.T) {
	h := DefaultHook()
	if !h.ParentACL || h.DryRun || h.AllowHardlinks || !h.Syslog {
		t.Errorf("DefaultHook() booleans = %+v", h)
	}
	for _, p := range []string{"/etc", "/usr", "/boot", h.StateDir} {
		if !slices.Contains(h.ProtectedPaths, p) {
			t.Errorf("DefaultHook().ProtectedPaths = %q, want %s in it", h.ProtectedPaths, p)
		}
	}
	if slices.Contains(h.ProtectedPaths, "/dev") {
		t.Errorf("DefaultHook().ProtectedPaths = %q protects /dev, where device nodes handed to QEMU live", h.ProtectedPaths)
	}
	// DefaultHook must not share its slice with the package default.
	h.ProtectedPaths[0] = "/changed"
	if DefaultHook().ProtectedPaths[0] == "/changed" {
		t.Error("DefaultHook() returns a slice aliasing package state")
	}
}

func TestLoadHook(t *testing.T) {
	tests := []struct {
		name string
		in   string
		edit func(*Hook) // applied to DefaultHook() to get the wanted result
	}{
		{"empty", "", func(*Hook) {}},
		{"comments only", "# dry_run = 1\n", func(*Hook) {}},
		{"dry run", "dry_run = 1\n", func(h *Hook) { h.DryRun = true }},
		{"state dir is protected", "state_dir = '/srv/dac-state'\n", func(h *Hook) {
			h.StateDir = "/srv/dac-state"
			h.ProtectedPaths = append(h.ProtectedPaths, "/srv/dac-state")
		}},
		{"protected paths replace the defaults", "protected_paths = [\n  \"/etc\",\n  \"/opt/secret\",\n]\n", func(h *Hook) {
			h.ProtectedPaths = []string{"/etc", "/opt/secret", DefaultStateDir}
		}},
		{"protected paths empty still protects state", "protected_paths = []\n", func(h *Hook) {
			h.ProtectedPaths = []string{DefaultStateDir}
		}},
		{"protected paths as a single string", `protected_paths = "/etc"`, func(h *Hook) {
			h.ProtectedPaths = []string{"/etc", DefaultStateDir}
		}},
		{"everything", strings.Join([]string{
			`qemu_conf = "/tmp/q/qemu.conf"`,
			`state_dir = "/tmp/state"`,
			`dry_run = 1`,
			`protected_paths = [ "/etc" ]`,
			`allow_hardlinks = 1`,
			`parent_search_acl = 0`,
			`live_watch = 0`,
			`daemon_pid_files = [ "/run/libvirt/libvirtd.pid" ]`,
			`backing_paths = [ "/var/lib/libvirt/images", "/srv/vm" ]`,
			`max_backing_depth = 8`,
			`lock_timeout = 0`,
			`sysfs_root = "/tmp/sys"`,
			`dev_root = "/tmp/dev"`,
			`storage_pool_dir = "/tmp/pools"`,
			`log_level = "debug"`,
			`syslog = 0`,
		}, "\n"), func(h *Hook) {
			*h = Hook{
				QEMUConf: "/tmp/q/qemu.conf", StateDir: "/tmp/state", DryRun: true,
				ProtectedPaths: []string{"/etc", "/tmp/state"}, AllowHardlinks: true, ParentACL: false,
				DaemonPidFiles:  []string{"/run/libvirt/libvirtd.pid"},
				BackingPaths:    []string{"/var/lib/libvirt/images", "/srv/vm"},
				MaxBackingDepth: 8, LockTimeout: 0, SysfsRoot: "/tmp/sys", DevRoot: "/tmp/dev",
				StoragePoolDir: "/tmp/pools", LogLevel: "debug", Syslog: false,
			}
		}},
		{"limits", "max_backing_depth = 1024\nlock_timeout = 86400\n", func(h *Hook) {
			h.MaxBackingDepth, h.LockTimeout = 1024, 24*time.Hour
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "hook.conf", tt.in)
			got, err := LoadHook(p)
			if err != nil {
				t.Fatalf("LoadHook(%q) error: %v", tt.in, err)
			}
			want := DefaultHook()
			tt.edit(&want)
			want.Path = p
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("LoadHook(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestLoadHookErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		is       error
		contains string
	}{
		{"unknown key", "dry_run = 0\nprotect_paths = [ \"/srv\" ]\n", ErrUnknownKey, "line 2: protect_paths: unknown setting"},
		{"duplicate key", "dry_run = 0\n\ndry_run = 1\n", ErrDuplicateKey, "line 3: dry_run: setting given more than once (first on line 1)"},
		{"bool as string", "dry_run = \"yes\"\n", virconf.ErrType, "line 1: dry_run: expected 0 or 1"},
		{"bool out of range", "syslog = 2\n", virconf.ErrType, "syslog: expected 0 or 1, got 2"},
		{"path as number", "state_dir = 5\n", virconf.ErrType, "state_dir: expected a string, got integer"},
		{"relative path", "state_dir = \"var/lib/x\"\n", ErrInvalid, `state_dir: "var/lib/x" is not an absolute, clean path`},
		{"unclean path", "qemu_conf = \"/etc/libvirt/../qemu.conf\"\n", ErrInvalid, "not an absolute, clean path"},
		{"trailing slash", "sysfs_root = \"/sys/\"\n", ErrInvalid, "not an absolute, clean path"},
		{"empty path", "dev_root = \"\"\n", ErrInvalid, "dev_root"},
		{"relative protected path", "protected_paths = [ \"/etc\", \"usr\" ]\n", ErrInvalid, `protected_paths: "usr"`},
		{"list of numbers", "backing_paths = [ 1 ]\n", virconf.ErrType, "backing_paths: expected a list of strings"},
		{"depth zero", "max_backing_depth = 0\n", ErrInvalid, "max_backing_depth: 0 is outside 1..1024"},
		{"depth too big", "max_backing_depth = 1025\n", ErrInvalid, "outside 1..1024"},
		{"negative timeout", "lock_timeout = -1\n", ErrInvalid, "lock_timeout: -1 is outside"},
		{"timeout as string", "lock_timeout = \"30s\"\n", virconf.ErrType, "lock_timeout: expected an integer"},
		{"bad log level", "log_level = \"loud\"\n", ErrInvalid, `log_level: "loud" is not a log level`},
		{"syntax", "dry_run 1\n", virconf.ErrSyntax, "line 1: expected '='"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "hook.conf", tt.in)
			got, err := LoadHook(p)
			if !errors.Is(err, tt.is) {
				t.Fatalf("LoadHook(%q) = %+v, %v; want errors.Is %v", tt.in, got, err, tt.is)
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("LoadHook(%q) error = %q, want it to name %s and contain %q", tt.in, err, p, tt.contains)
			}
		})
	}
}

func TestLoadHookMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing.conf")
	got, err := LoadHook(p)
	if err != nil {
		t.Fatalf("LoadHook(missing) error: %v", err)
	}
	want := DefaultHook()
	want.Path = p
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadHook(missing) (-want +got):\n%s", diff)
	}
}

func TestLoadHookFromEnv(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "hook.conf")
	if err := os.WriteFile(conf, []byte("log_level = \"debug\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		edit func(*Hook)
		is   error
	}{
		{"config path", map[string]string{EnvConfig: conf}, func(h *Hook) { h.Path = conf; h.LogLevel = "debug" }, nil},
		{"dry run forced", map[string]string{EnvConfig: conf, EnvDryRun: "1"}, func(h *Hook) {
			h.Path, h.LogLevel, h.DryRun = conf, "debug", true
		}, nil},
		{"dry run 0 is no-op", map[string]string{EnvConfig: conf, EnvDryRun: "0"}, func(h *Hook) {
			h.Path, h.LogLevel = conf, "debug"
		}, nil},
		{"state dir", map[string]string{EnvConfig: conf, EnvStateDir: "/tmp/st"}, func(h *Hook) {
			h.Path, h.LogLevel, h.StateDir = conf, "debug", "/tmp/st"
			h.ProtectedPaths = append(h.ProtectedPaths, "/tmp/st")
		}, nil},
		{"dry run typo", map[string]string{EnvConfig: conf, EnvDryRun: "yes"}, nil, ErrInvalid},
		{"relative state dir", map[string]string{EnvConfig: conf, EnvStateDir: "st"}, nil, ErrInvalid},
		{"relative config", map[string]string{EnvConfig: "hook.conf"}, nil, ErrInvalid},
		{"missing config", map[string]string{EnvConfig: filepath.Join(dir, "none.conf")}, func(h *Hook) {
			h.Path = filepath.Join(dir, "none.conf")
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{EnvConfig, EnvDryRun, EnvStateDir} {
				t.Setenv(k, "")
				if err := os.Unsetenv(k); err != nil {
					t.Fatal(err)
				}
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := LoadHookFromEnv()
			if tt.is != nil {
				if !errors.Is(err, tt.is) {
					t.Fatalf("LoadHookFromEnv() = %+v, %v; want errors.Is %v", got, err, tt.is)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadHookFromEnv() error: %v", err)
			}
			want := DefaultHook()
			tt.edit(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("LoadHookFromEnv() (-want +got):\n%s", diff)
			}
		})
	}
}

func installedConf(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "install", "libvirt-dac-hook.conf")
}

// TestInstalledConfMatchesDefaults keeps install/libvirt-dac-hook.conf and
// DefaultHook in step: as shipped (all commented out) it must load as the
// defaults, and with every commented-out setting enabled it must load as
// the defaults too, so each documented default is the real one.
func TestInstalledConfMatchesDefaults(t *testing.T) {
	p := installedConf(t)
	got, err := LoadHook(p)
	if err != nil {
		t.Fatalf("LoadHook(%s) error: %v", p, err)
	}
	want := DefaultHook()
	want.Path = p
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadHook(%s) differs from DefaultHook() (-want +got):\n%s", p, diff)
	}

	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	enabled, keys := uncommentSettings(string(data))
	if diff := cmp.Diff(hookKeys, keys, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("settings documented in %s (-known +documented):\n%s", p, diff)
	}
	q := writeFile(t, "enabled.conf", enabled)
	got, err = LoadHook(q)
	if err != nil {
		t.Fatalf("LoadHook(%s with every setting enabled) error: %v\n%s", p, err, enabled)
	}
	want.Path = q
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s with every setting enabled differs from DefaultHook() (-want +got):\n%s", p, diff)
	}
}

var commentedSetting = regexp.MustCompile(`^#([a-z_]+) = `)

// uncommentSettings removes the '#' from every commented-out setting
// ("#name = value", and the following lines of a list it opens) and
// returns the new text and the names it enabled.
func uncommentSettings(text string) (string, []string) {
	lines := strings.Split(text, "\n")
	var keys []string
	inList := false
	for i, l := range lines {
		if m := commentedSetting.FindStringSubmatch(l); m != nil {
			keys = append(keys, m[1])
			lines[i] = l[1:]
			inList = strings.Contains(l, "[") && !strings.Contains(l, "]")
			continue
		}
		if inList {
			if !strings.HasPrefix(l, "#") {
				break // unterminated list: leave it for the parser to report
			}
			lines[i] = l[1:]
			inList = !strings.Contains(l, "]")
		}
	}
	return strings.Join(lines, "\n"), keys
}

// FuzzLoadHook: no panic, and whatever loads satisfies the guarantees the
// rest of the hook relies on.
func FuzzLoadHook(f *testing.F) {
	for _, s := range []string{
		"", "dry_run = 1\n", "protected_paths = [ \"/etc\", ]\nstate_dir = \"/s\"\n",
		"backing_paths = '/a'\n", "lock_timeout = -0\n", "max_backing_depth = +9\n", "log_level = 'trace'",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "hook.conf")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := LoadHook(p)
		if err != nil {
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		paths := append([]string{h.QEMUConf, h.StateDir, h.SysfsRoot, h.DevRoot, h.StoragePoolDir}, h.ProtectedPaths...)
		for _, q := range append(paths, h.BackingPaths...) {
			if !absClean(q) {
				t.Fatalf("loaded path %q is not absolute and clean", q)
			}
		}
		if !slices.Contains(h.ProtectedPaths, h.StateDir) {
			t.Fatalf("state dir %s not protected: %q", h.StateDir, h.ProtectedPaths)
		}
		if h.MaxBackingDepth < 1 || h.LockTimeout < 0 {
			t.Fatalf("out of range: depth %d, timeout %v", h.MaxBackingDepth, h.LockTimeout)
		}
	})
}
