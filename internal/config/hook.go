package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/virconf"
)

// Errors from loading the hook's configuration. Compare with errors.Is.
var (
	// ErrUnknownKey: a setting this version does not know. It is an error,
	// not a warning, because a misspelt safety setting must not silently
	// fall back to its default.
	ErrUnknownKey = errors.New("unknown setting")
	// ErrDuplicateKey: a setting given twice. libvirt would use the first
	// one, which surprises anyone who appends an override to the file.
	ErrDuplicateKey = errors.New("setting given more than once")
	// ErrInvalid: a value of the right type but unacceptable, such as a
	// relative path or an out-of-range number.
	ErrInvalid = errors.New("invalid value")
)

// Default locations.
const (
	DefaultHookConf = "/etc/libvirt/libvirt-dac-hook.conf"
	DefaultStateDir = "/var/lib/libvirt-dac-hook"
)

// Environment variables read by LoadHookFromEnv.
const (
	EnvConfig   = "LIBVIRT_DAC_HOOK_CONFIG"
	EnvDryRun   = "LIBVIRT_DAC_HOOK_DRY_RUN"
	EnvStateDir = "LIBVIRT_DAC_HOOK_STATE_DIR"
)

// Hook is the hook's own configuration, /etc/libvirt/libvirt-dac-hook.conf,
// in libvirt syntax. Every path in it is absolute and clean.
type Hook struct {
	Path string // the file read, "" for DefaultHook

	QEMUConf string // qemu_conf: libvirt's qemu.conf
	StateDir string // state_dir: journal and lock
	DryRun   bool   // dry_run: log what would change, change nothing

	// ProtectedPaths (protected_paths) are never chowned, nor is anything
	// below them. StateDir is always added, whatever the file says.
	ProtectedPaths []string
	// AllowHardlinks (allow_hardlinks) permits chowning regular files with
	// more than one link; off by default because the other names may be
	// anywhere, protected paths included.
	AllowHardlinks bool
	// ParentACL (parent_search_acl): grant QEMU search permission on
	// parent directories it cannot traverse, with an ACL entry.
	ParentACL bool
	// LiveWatch (live_watch): in cooperative mode, write the domain's
	// record and make the handshake with the watcher service, so files
	// libvirt labels during the run get their owner back too.
	LiveWatch bool
	// DaemonPidFiles (daemon_pid_files) are the pid files of libvirt's
	// daemon (monolithic libvirtd, or modular virtqemud): the watcher
	// counts an owner change as libvirt's label only when that daemon, or
	// a fork of it, made it. Set it when libvirtd runs with --pid-file.
	DaemonPidFiles []string
	// BackingPaths (backing_paths) restricts where files named in image
	// headers (backing files, VMDK extents, qcow2 data files) may be: at
	// or below one of them. Empty means the naming image's own directory,
	// or below /var/lib/libvirt/images or a dir/fs/netfs pool target.
	BackingPaths []string
	// MaxBackingDepth (max_backing_depth) bounds backing chains.
	MaxBackingDepth int
	// LockTimeout (lock_timeout, in whole seconds) is how long to wait for
	// the state lock.
	LockTimeout time.Duration

	SysfsRoot      string // sysfs_root: where sysfs is mounted (for tests)
	DevRoot        string // dev_root: where devtmpfs is mounted (for tests)
	StoragePoolDir string // storage_pool_dir: libvirt's storage pool XMLs

	LogLevel string // log_level: a logrus level name
	Syslog   bool   // syslog: also log to syslog/journal
	// LogFile (log_file), when set, is a file every log line is appended
	// to as well; "" means none.
	LogFile string
	// BackingAnyOwner (backing_any_owner) lets image headers name files
	// owned by anyone. Off by default: a header QEMU could have rewritten
	// may only name files owned by root, the QEMU user or the (original)
	// owner of the image naming them, or backing files in a directory only
	// root can write.
	BackingAnyOwner bool
	// ClusterDir (cluster_dir), when set, is where the records of files on
	// shared filesystems are kept: a directory on shared storage that every
	// host mounts at this same path (like virtlockd's file_lockspace_dir).
	// Empty means a .libvirt-dac-hook directory at the top of each shared
	// filesystem (or in each shared_filesystems entry of qemu.conf).
	ClusterDir string
}

// defaultProtected are system directories no disk image belongs in. /dev
// is not here: device nodes are legitimately handed to QEMU.
var defaultProtected = []string{
	"/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
	"/proc", "/sbin", "/sys", "/usr",
}

// DefaultHook returns the configuration used when the file is missing or
// sets nothing. install/libvirt-dac-hook.conf documents the same values; a
// test keeps the two in step.
func DefaultHook() Hook {
	h := Hook{
		QEMUConf:        DefaultQEMUConf,
		StateDir:        DefaultStateDir,
		ProtectedPaths:  slices.Clone(defaultProtected),
		ParentACL:       true,
		LiveWatch:       true,
		DaemonPidFiles:  []string{"/run/libvirtd.pid", "/run/virtqemud.pid"},
		MaxBackingDepth: 64,
		LockTimeout:     30 * time.Second,
		SysfsRoot:       "/sys",
		DevRoot:         "/dev",
		StoragePoolDir:  "/etc/libvirt/storage",
		LogLevel:        "info",
		Syslog:          true,
	}
	h.protectStateDir()
	return h
}

// protectStateDir adds StateDir and ClusterDir to ProtectedPaths unless
// already there: a domain XML naming the journal must not get it chowned
// to QEMU.
func (h *Hook) protectStateDir() {
	if !slices.Contains(h.ProtectedPaths, h.StateDir) {
		h.ProtectedPaths = append(h.ProtectedPaths, h.StateDir)
	}
	// The cluster records are the state of every host.
	if h.ClusterDir != "" && !slices.Contains(h.ProtectedPaths, h.ClusterDir) {
		h.ProtectedPaths = append(h.ProtectedPaths, h.ClusterDir)
	}
}

// Limits on numeric settings.
const (
	maxBackingDepthLimit = 1024
	maxLockTimeout       = 24 * 60 * 60 // seconds
)

// LoadHook reads the hook configuration at path. A missing file gives
// DefaultHook (with Path set). Unknown settings, settings given twice,
// values of the wrong type and invalid values are errors naming the file,
// line and setting.
func LoadHook(path string) (Hook, error) {
	h := DefaultHook()
	h.Path = path
	cf, err := readConf(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return Hook{}, err
	}
	l := hookLoader{file: path, cf: cf}
	if err := l.checkKeys(); err != nil {
		return Hook{}, err
	}
	l.path("qemu_conf", &h.QEMUConf)
	l.path("state_dir", &h.StateDir)
	l.bool("dry_run", &h.DryRun)
	l.paths("protected_paths", &h.ProtectedPaths)
	l.bool("allow_hardlinks", &h.AllowHardlinks)
	l.bool("parent_search_acl", &h.ParentACL)
	l.bool("live_watch", &h.LiveWatch)
	l.paths("daemon_pid_files", &h.DaemonPidFiles)
	l.paths("backing_paths", &h.BackingPaths)
	depth, timeout := int64(h.MaxBackingDepth), int64(h.LockTimeout/time.Second)
	l.int("max_backing_depth", &depth, 1, maxBackingDepthLimit)
	l.int("lock_timeout", &timeout, 0, maxLockTimeout)
	h.MaxBackingDepth, h.LockTimeout = int(depth), time.Duration(timeout)*time.Second
	l.path("sysfs_root", &h.SysfsRoot)
	l.path("dev_root", &h.DevRoot)
	l.path("storage_pool_dir", &h.StoragePoolDir)
	l.str("log_level", &h.LogLevel)
	l.bool("syslog", &h.Syslog)
	l.str("log_file", &h.LogFile)
	l.bool("backing_any_owner", &h.BackingAnyOwner)
	l.str("cluster_dir", &h.ClusterDir)
	if l.err == nil && h.ClusterDir != "" && !absClean(h.ClusterDir) {
		return Hook{}, l.invalid("cluster_dir", "%q is not an absolute, clean path", h.ClusterDir)
	}
	if l.err == nil && h.LogFile != "" && !absClean(h.LogFile) {
		return Hook{}, l.invalid("log_file", "%q is not an absolute, clean path", h.LogFile)
	}
	if l.err != nil {
		return Hook{}, l.err
	}
	if _, err := logrus.ParseLevel(h.LogLevel); err != nil {
		return Hook{}, l.invalid("log_level", "%q is not a log level (panic, fatal, error, warn, info, debug, trace)", h.LogLevel)
	}
	h.protectStateDir()
	return h, nil
}

// LoadHookFromEnv loads the configuration the way the hook binary does:
// from $LIBVIRT_DAC_HOOK_CONFIG (default DefaultHookConf), then
// $LIBVIRT_DAC_HOOK_DRY_RUN=1 forces DryRun on and
// $LIBVIRT_DAC_HOOK_STATE_DIR replaces StateDir (which is then protected
// too). The variables exist for tests and for trying the hook out; an
// unrecognised value is an error rather than ignored.
func LoadHookFromEnv() (Hook, error) {
	path := DefaultHookConf
	if p, ok := os.LookupEnv(EnvConfig); ok {
		if !absClean(p) {
			return Hook{}, fmt.Errorf("$%s: %q is not an absolute, clean path: %w", EnvConfig, p, ErrInvalid)
		}
		path = p
	}
	h, err := LoadHook(path)
	if err != nil {
		return Hook{}, err
	}
	switch v := os.Getenv(EnvDryRun); v {
	case "", "0":
	case "1":
		h.DryRun = true
	default:
		return Hook{}, fmt.Errorf("$%s: %q is neither 0 nor 1: %w", EnvDryRun, v, ErrInvalid)
	}
	if d, ok := os.LookupEnv(EnvStateDir); ok {
		if !absClean(d) {
			return Hook{}, fmt.Errorf("$%s: %q is not an absolute, clean path: %w", EnvStateDir, d, ErrInvalid)
		}
		h.StateDir = d
		h.protectStateDir()
	}
	return h, nil
}

// hookKeys lists every setting LoadHook knows.
var hookKeys = []string{
	"qemu_conf", "state_dir", "dry_run", "protected_paths", "allow_hardlinks",
	"parent_search_acl", "backing_paths", "max_backing_depth", "lock_timeout",
	"sysfs_root", "dev_root", "storage_pool_dir", "log_level", "syslog",
	"log_file", "backing_any_owner", "live_watch", "cluster_dir", "daemon_pid_files",
}

func absClean(p string) bool { return filepath.IsAbs(p) && filepath.Clean(p) == p }

// hookLoader reads typed settings, keeping the first error so that the
// loading code reads as a list of settings.
type hookLoader struct {
	file string
	cf   *virconf.File
	err  error
}

func (l *hookLoader) checkKeys() error {
	seen := make(map[string]int)
	for _, e := range l.cf.Entries() {
		if !slices.Contains(hookKeys, e.Key) {
			return fmt.Errorf("parse %s: line %d: %s: %w", l.file, e.Line, e.Key, ErrUnknownKey)
		}
		if first, dup := seen[e.Key]; dup {
			return fmt.Errorf("parse %s: line %d: %s: %w (first on line %d)", l.file, e.Line, e.Key, ErrDuplicateKey, first)
		}
		seen[e.Key] = e.Line
	}
	return nil
}

func (l *hookLoader) wrap(err error) {
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("parse %s: %w", l.file, err)
	}
}

func (l *hookLoader) invalid(key, format string, args ...any) error {
	e, _ := l.cf.Lookup(key)
	return fmt.Errorf("parse %s: line %d: %s: %s: %w", l.file, e.Line, key, fmt.Sprintf(format, args...), ErrInvalid)
}

func (l *hookLoader) setInvalid(key, format string, args ...any) {
	if l.err == nil {
		l.err = l.invalid(key, format, args...)
	}
}

func (l *hookLoader) str(key string, dst *string) {
	s, ok, err := l.cf.String(key)
	l.wrap(err)
	if ok && err == nil {
		*dst = s
	}
}

func (l *hookLoader) path(key string, dst *string) {
	s, ok, err := l.cf.String(key)
	l.wrap(err)
	if !ok || err != nil {
		return
	}
	if !absClean(s) {
		l.setInvalid(key, "%q is not an absolute, clean path", s)
		return
	}
	*dst = s
}

func (l *hookLoader) paths(key string, dst *[]string) {
	list, ok, err := l.cf.Strings(key)
	l.wrap(err)
	if !ok || err != nil {
		return
	}
	for _, p := range list {
		if !absClean(p) {
			l.setInvalid(key, "%q is not an absolute, clean path", p)
			return
		}
	}
	if len(list) == 0 {
		list = nil // so that "[]" equals the unset default
	}
	*dst = list
}

func (l *hookLoader) bool(key string, dst *bool) {
	b, ok, err := l.cf.Bool(key)
	l.wrap(err)
	if ok && err == nil {
		*dst = b
	}
}

func (l *hookLoader) int(key string, dst *int64, lo, hi int64) {
	n, ok, err := l.cf.Int(key)
	l.wrap(err)
	if !ok || err != nil {
		return
	}
	if n < lo || n > hi {
		l.setInvalid(key, "%d is outside %d..%d", n, lo, hi)
		return
	}
	*dst = n
}
