package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/virconf"
)

// DefaultQEMUConf is where libvirt's system instance reads qemu.conf.
const DefaultQEMUConf = "/etc/libvirt/qemu.conf"

// LibvirtStateDirs are the directories libvirt's system QEMU driver keeps
// its per-domain state in (libDir, channelTargetDir, cacheDir, stateDir).
// QEMU reaches its own domain-N-NAME directories through them, so qemu.conf's
// user must be able to search each one; libvirt gives all but the run
// directory to that user when it starts. The order is the order plans
// list them in.
var LibvirtStateDirs = []string{
	"/var/lib/libvirt/qemu", "/var/lib/libvirt/qemu/channel/target",
	"/var/cache/libvirt/qemu", "/run/libvirt/qemu",
}

// QEMU is what the hook reads from /etc/libvirt/qemu.conf. Values are as
// written, first occurrence winning, like libvirt; nothing is resolved yet
// (see RunAs).
type QEMU struct {
	Path        string // the file read, set even when it does not exist
	User, Group string // raw "user" and "group" values, "" if unset
	// DynamicOwnership is "dynamic_ownership", nil if unset (libvirt's
	// default is true: libvirt itself chowns images).
	DynamicOwnership *bool
	// RememberOwner is "remember_owner", nil if unset (libvirt's default
	// is true).
	RememberOwner *bool
	// BuiltinUser and BuiltinGroup are libvirt's build-time defaults as
	// the packaged qemu.conf documents them in its commented-out
	// `#user = "..."` and `#group = "..."` lines (the file is generated
	// from QEMU_USER/QEMU_GROUP). "" when the file does not say.
	BuiltinUser, BuiltinGroup string
	// StdioHandler is "stdio_handler": "logd" (libvirt's default: virtlogd
	// opens chardev and console log files) or "file" (QEMU opens them).
	StdioHandler string
	// SharedFilesystems is "shared_filesystems" (libvirt >= 10.0): the
	// directories libvirt takes to be on storage shared with other hosts
	// whatever their filesystem, canonicalised as libvirt does, so that a
	// file matches when it or a parent directory is one of them.
	SharedFilesystems []string
}

// builtinDefault reads one of the commented-out defaults libvirt's qemu.conf
// template carries, `#user = "libvirt-qemu"` or `#group = "libvirt-qemu"`:
// key is "user" or "group" and value the name, ok false for any other line.
// A scan rather than a regular expression: the template is ~1,000 lines,
// read at every prepare and release, and a multi-line regexp over it costs
// a sixth of a one-disk call.
func builtinDefault(line []byte) (key, value string, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte("#"))
	if !found {
		return "", "", false
	}
	for _, k := range builtinKeys {
		v, found := bytes.CutPrefix(rest, k.prefix)
		if !found {
			continue
		}
		end := bytes.IndexByte(v, '"')
		if end <= 0 || !builtinName(v[:end]) || len(bytes.TrimRight(v[end+1:], " \t\r\f")) != 0 {
			return "", "", false
		}
		return k.name, string(v[:end]), true
	}
	return "", "", false
}

var builtinKeys = []struct {
	name   string
	prefix []byte
}{{"user", []byte(`user = "`)}, {"group", []byte(`group = "`)}}

// builtinName says whether b is made only of the characters libvirt's
// configure accepts in QEMU_USER/QEMU_GROUP names: [A-Za-z0-9_.+-].
func builtinName(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '+', c == '-':
		default:
			return false
		}
	}
	return true
}

// LoadQEMU reads the qemu.conf at path. A missing file is not an error:
// libvirt then runs on its built-in defaults, and so does the returned QEMU
// (zero apart from Path). A file that cannot be read or parsed, or whose
// settings have the wrong type, is an error naming the path and line,
// because libvirtd would refuse to start on it too.
func LoadQEMU(path string) (QEMU, error) {
	q := QEMU{Path: path}
	cf, raw, err := readConfRaw(path)
	if errors.Is(err, fs.ErrNotExist) {
		return q, nil
	}
	if err != nil {
		return q, err
	}
	for line := range bytes.Lines(raw) {
		k, v, ok := builtinDefault(bytes.TrimSuffix(line, []byte("\n")))
		switch {
		case ok && k == "user" && q.BuiltinUser == "":
			q.BuiltinUser = v
		case ok && k == "group" && q.BuiltinGroup == "":
			q.BuiltinGroup = v
		}
	}
	for _, key := range []struct {
		name string
		dst  *string
	}{{"user", &q.User}, {"group", &q.Group}, {"stdio_handler", &q.StdioHandler}} {
		s, ok, err := cf.String(key.name)
		if err != nil {
			return q, fmt.Errorf("parse %s: %w", path, err)
		}
		if ok && s == "" {
			// libvirt fails with "Failed to parse user ''"; treating it as
			// unset would silently pick the default account instead.
			e, _ := cf.Lookup(key.name)
			return q, fmt.Errorf("parse %s: line %d: %s: empty value: %w", path, e.Line, key.name, ErrInvalid)
		}
		*key.dst = s
	}
	for _, key := range []struct {
		name string
		dst  **bool
	}{{"dynamic_ownership", &q.DynamicOwnership}, {"remember_owner", &q.RememberOwner}} {
		b, ok, err := cf.Bool(key.name)
		if err != nil {
			return q, fmt.Errorf("parse %s: %w", path, err)
		}
		if ok {
			*key.dst = &b
		}
	}
	shared, err := sharedFilesystems(cf)
	if err != nil {
		return q, fmt.Errorf("parse %s: %w", path, err)
	}
	q.SharedFilesystems = shared
	return q, nil
}

// sharedFilesystems reads shared_filesystems as libvirt does: a list of
// strings (not a single string), each resolved to its canonical path; a
// path that does not resolve (yet) is kept as written, cleaned, and one
// that is not absolute can match no file and is left out.
func sharedFilesystems(cf *virconf.File) ([]string, error) {
	e, ok := cf.Lookup("shared_filesystems")
	if !ok {
		return nil, nil
	}
	if e.Value.Type != virconf.List {
		return nil, fmt.Errorf("line %d: shared_filesystems: expected a list of strings, got %s: %w", e.Line, e.Value.Type, ErrInvalid)
	}
	list, _, err := cf.Strings("shared_filesystems")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range list {
		if !filepath.IsAbs(p) {
			continue
		}
		if c, err := filepath.EvalSymlinks(p); err == nil {
			p = c
		}
		out = append(out, filepath.Clean(p))
	}
	return out, nil
}

// DynamicOwnershipEnabled reports dynamic_ownership with libvirt's default
// (true) applied.
func (q QEMU) DynamicOwnershipEnabled() bool {
	return q.DynamicOwnership == nil || *q.DynamicOwnership
}

// RememberOwnerEnabled reports remember_owner with libvirt's default
// (true) applied.
func (q QEMU) RememberOwnerEnabled() bool {
	return q.RememberOwner == nil || *q.RememberOwner
}
