package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/testenv"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/virconf"
)

func boolp(b bool) *bool { return &b }

// writeFile writes content to name in a fresh temp dir and returns the path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadQEMU(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want QEMU // Path is filled in by the test
	}{
		{"empty", "", QEMU{}},
		{"all commented", "#user = \"qemu\"\n# group = \"qemu\"\n#dynamic_ownership = 0\n", QEMU{BuiltinUser: "qemu"}},
		{"double quotes", `user = "libvirt-qemu"` + "\n" + `group = "kvm"`, QEMU{User: "libvirt-qemu", Group: "kvm"}},
		{"single quotes", "user = '+107'\ngroup = '+107'\n", QEMU{User: "+107", Group: "+107"}},
		{"first occurrence wins", "user = \"qemu\"\nuser = \"root\"\ndynamic_ownership = 0\ndynamic_ownership = 1\n",
			QEMU{User: "qemu", DynamicOwnership: boolp(false)}},
		{"booleans", "dynamic_ownership = 1\nremember_owner = 0\n",
			QEMU{DynamicOwnership: boolp(true), RememberOwner: boolp(false)}},
		{"other settings and lists ignored", "security_driver = [ \"selinux\", \"dac\" ]\n" +
			"cgroup_device_acl = [\n    \"/dev/null\", \"/dev/full\",\n    \"/dev/kvm\"\n]\nmax_core = \"unlimited\"\nuser = \"qemu\" # trailing\n",
			QEMU{User: "qemu"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "qemu.conf", tt.in)
			got, err := LoadQEMU(p)
			if err != nil {
				t.Fatalf("LoadQEMU(%q) error: %v", tt.in, err)
			}
			tt.want.Path = p
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("LoadQEMU(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestLoadQEMUErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		contains string
		is       error
	}{
		{"malformed line", "# ok\nuser = \"qemu\"\n\ngroup \"kvm\"\n", `line 4: expected '=' after name "group"`, virconf.ErrSyntax},
		{"unterminated string", "user = \"qemu\n", "line 1: unterminated string", virconf.ErrSyntax},
		{"user not a string", "user = 107\n", "line 1: user: expected a string", virconf.ErrType},
		{"group not a string", "group = [ \"kvm\" ]\n", "group: expected a string, got list", virconf.ErrType},
		{"bool out of range", "\ndynamic_ownership = 2\n", "line 2: dynamic_ownership: expected 0 or 1", virconf.ErrType},
		{"bool as string", "remember_owner = \"yes\"\n", "remember_owner: expected 0 or 1", virconf.ErrType},
		{"empty user", "user = \"\"\n", "line 1: user: empty value", ErrInvalid},
		{"comment inside list", "cgroup_device_acl = [\n  \"/dev/null\", # null\n]\n", "line 2:", virconf.ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "qemu.conf", tt.in)
			_, err := LoadQEMU(p)
			if err == nil {
				t.Fatalf("LoadQEMU(%q) error = nil, want one", tt.in)
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("LoadQEMU(%q) error = %q, want it to name %s and contain %q", tt.in, err, p, tt.contains)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("LoadQEMU(%q) error = %v, want errors.Is %v", tt.in, err, tt.is)
			}
		})
	}
}

func TestLoadQEMUMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope", "qemu.conf")
	got, err := LoadQEMU(p)
	if err != nil || !cmp.Equal(got, QEMU{Path: p}) {
		t.Errorf("LoadQEMU(missing) = %+v, %v; want %+v, nil", got, err, QEMU{Path: p})
	}
	if !got.DynamicOwnershipEnabled() || !got.RememberOwnerEnabled() {
		t.Errorf("defaults of missing qemu.conf: dynamic_ownership %v, remember_owner %v; want true, true",
			got.DynamicOwnershipEnabled(), got.RememberOwnerEnabled())
	}
}

func TestLoadQEMUUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory cannot be read as a file, even by root.
	_, err := LoadQEMU(dir)
	if err == nil || !strings.Contains(err.Error(), dir) || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadQEMU(directory) error = %v, want a read error naming %s", err, dir)
	}
}

func TestLoadQEMUTooLarge(t *testing.T) {
	p := writeFile(t, "qemu.conf", strings.Repeat("#\n", virconf.MaxSize/2+1))
	if _, err := LoadQEMU(p); !errors.Is(err, virconf.ErrTooLarge) {
		t.Errorf("LoadQEMU(oversized) error = %v, want ErrTooLarge", err)
	}
}

// TestLoadQEMULibvirt reads libvirt's own, fully commented qemu.conf.
func TestLoadQEMULibvirt(t *testing.T) {
	p := filepath.Join(testenv.SharedDir(t), "reference", "libvirt-9.0.0", "qemu.conf")
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("libvirt's qemu.conf not found at %s: the shared directory lacks reference/libvirt-9.0.0", p)
	}
	got, err := LoadQEMU(p)
	if err != nil {
		t.Fatalf("LoadQEMU(libvirt qemu.conf) error: %v", err)
	}
	if want := (QEMU{Path: p}); !cmp.Equal(got, want) {
		t.Errorf("LoadQEMU(libvirt qemu.conf) = %+v, want %+v", got, want)
	}
}

// repoRoot walks up from the package directory to the one holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package directory")
		}
		dir = parent
	}
}

// FuzzLoadQEMU feeds arbitrary bytes through LoadQEMU: no panic, and a
// successful load only reports settings whose values appear in the input.
func FuzzLoadQEMU(f *testing.F) {
	for _, s := range []string{
		"", "user = \"qemu\"\ngroup = 'kvm'\n", "dynamic_ownership = 0\nremember_owner = 1\n",
		"user = 107", "user = \"\"", "user = \"a\"\nuser = \"b\"", "x = [\n\"a\",\n]\nuser='+0'",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "qemu.conf")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		q, err := LoadQEMU(p)
		if err != nil {
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, s := range []string{q.User, q.Group} {
			if s != "" && !strings.Contains(string(data), s) {
				t.Fatalf("value %q not in input %q", s, data)
			}
		}
		for key, set := range map[string]bool{
			"user": q.User != "", "group": q.Group != "",
			"dynamic_ownership": q.DynamicOwnership != nil, "remember_owner": q.RememberOwner != nil,
		} {
			if set && !strings.Contains(string(data), key) {
				t.Fatalf("%s set from input %q that does not name it", key, data)
			}
		}
	})
}

func TestBuiltinDefaultsFromTemplate(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/qemu.conf"
	// The template libvirt installs documents its build-time defaults in
	// commented-out lines; the first of each wins, like real settings.
	data := "# The user for QEMU processes\n#user = \"root\"\n#group = \"daemon\"\n#user = \"nobody\"\n"
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	q, err := LoadQEMU(p)
	if err != nil {
		t.Fatal(err)
	}
	if q.BuiltinUser != "root" || q.BuiltinGroup != "daemon" {
		t.Fatalf("LoadQEMU builtin = %q:%q, want root:daemon", q.BuiltinUser, q.BuiltinGroup)
	}
	id, err := q.RunAs()
	if err != nil {
		t.Fatal(err)
	}
	if id.UID != 0 || id.Group != "daemon" {
		t.Errorf("RunAs() = %s, want root:daemon from the template", id)
	}
}

// TestSharedFilesystems: shared_filesystems is read as libvirt reads it: a
// list of strings only, each resolved to its canonical path (a symlinked
// directory names where it leads), a path that does not resolve kept as
// written, one that is not absolute left out.
func TestSharedFilesystems(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	canonDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in string
		want     []string
		wantErr  bool
	}{
		{"unset", "", nil, false},
		{"list", `shared_filesystems = [ "` + target + `", "/srv/nfs/" ]`, []string{filepath.Join(canonDir, "real"), "/srv/nfs"}, false},
		{"symlink resolved", `shared_filesystems = [ "` + filepath.Join(dir, "link") + `" ]`, []string{filepath.Join(canonDir, "real")}, false},
		{"relative left out", `shared_filesystems = [ "images", "/srv" ]`, []string{"/srv"}, false},
		{"a string is not a list", `shared_filesystems = "/srv"`, nil, true},
		{"a number in the list", `shared_filesystems = [ "/srv", 1 ]`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := LoadQEMU(writeFile(t, "qemu.conf", tc.in+"\n"))
			if (err != nil) != tc.wantErr {
				t.Fatalf("LoadQEMU(%s) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if err == nil && !cmp.Equal(q.SharedFilesystems, tc.want) {
				t.Errorf("LoadQEMU(%s).SharedFilesystems = %q, want %q", tc.in, q.SharedFilesystems, tc.want)
			}
		})
	}
}

func TestBuiltinDefault(t *testing.T) {
	for _, tc := range []struct {
		line, key, value string
		ok               bool
	}{
		{`#user = "libvirt-qemu"`, "user", "libvirt-qemu", true},
		{`#group = "kvm"`, "group", "kvm", true},
		{"#group = \"kvm\" \t\r", "group", "kvm", true},
		{`#user = "a.b+c_d-9"`, "user", "a.b+c_d-9", true},
		{`user = "qemu"`, "", "", false},      // a setting, not the template's default
		{`# user = "qemu"`, "", "", false},    // prose in the template
		{`#user = ""`, "", "", false},         // no name
		{`#user = "qe mu"`, "", "", false},    // not a name libvirt builds with
		{`#user = "qemu" # x`, "", "", false}, // trailing text
		{`#user = "qemu`, "", "", false},      // unterminated
		{`#user="qemu"`, "", "", false},       // not the template's spelling
		{`#dynamic_ownership = 1`, "", "", false},
	} {
		k, v, ok := builtinDefault([]byte(tc.line))
		if k != tc.key || v != tc.value || ok != tc.ok {
			t.Errorf("builtinDefault(%q) = %q, %q, %v; want %q, %q, %v", tc.line, k, v, ok, tc.key, tc.value, tc.ok)
		}
	}
}
