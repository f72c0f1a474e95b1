package cli

import (
	"io"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/sysfs"
)

// setup is everything a command needs from the configuration.
type setup struct {
	hook  config.Hook
	qemu  config.QEMU
	runAs config.Identity
	log   *logrus.Logger
	close []func()
}

func (s *setup) Close() {
	for _, f := range s.close {
		f()
	}
}

// loadSetup reads our config and qemu.conf. Errors carry ExitConfig.
func loadSetup(e *env, hookMode bool) (*setup, error) {
	h, err := config.LoadHookFromEnv()
	if err != nil {
		return nil, withCode(ExitConfig, err)
	}
	q, err := config.LoadQEMU(h.QEMUConf)
	if err != nil {
		return nil, withCode(ExitConfig, err)
	}
	s := &setup{hook: h, qemu: q}
	s.log = newLogger(e, h, hookMode, s)
	return s, nil
}

// identity resolves who QEMU runs as; deferred because most hook calls never
// need it.
func (s *setup) identity() (config.Identity, error) {
	id, err := s.qemu.RunAs()
	if err != nil {
		return id, withCode(ExitConfig, err) // RunAs names qemu.conf already
	}
	s.runAs = id
	return id, nil
}

// newLogger configures logging once: in hook mode stderr gets only errors
// (libvirt appends hook stderr to its own error message, so it must stay
// one line), while every change goes to syslog/journal and the optional
// log file. By hand, stderr gets everything at the configured level.
func newLogger(e *env, h config.Hook, hookMode bool, s *setup) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	level, err := logrus.ParseLevel(h.LogLevel)
	if err != nil {
		level = logrus.InfoLevel
	}
	log.SetLevel(level)
	if !hookMode {
		log.AddHook(&writerHook{w: e.stderr, levels: levelsUpTo(level), f: &logrus.TextFormatter{DisableTimestamp: true}})
	}
	if h.Syslog {
		if hk, err := newSyslogHook("libvirt-dac-hook"); err == nil {
			log.AddHook(hk)
		}
	}
	if h.LogFile != "" {
		// O_NONBLOCK|O_NOFOLLOW: a FIFO or symlink planted at log_file must
		// not hang the hook (and libvirtd with it) or redirect its writes.
		if fd, err := unix.Open(h.LogFile, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o600); err == nil {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				f := os.NewFile(uintptr(fd), h.LogFile)
				log.AddHook(&writerHook{w: f, levels: levelsUpTo(level), f: &logrus.TextFormatter{FullTimestamp: true, DisableColors: true}})
				s.close = append(s.close, func() { f.Close() })
			} else {
				unix.Close(fd)
			}
		}
	}
	return log
}

func levelsUpTo(max logrus.Level) []logrus.Level {
	var out []logrus.Level
	for _, l := range logrus.AllLevels {
		if l <= max {
			out = append(out, l)
		}
	}
	return out
}

// writerHook sends entries to a writer with its own formatter.
type writerHook struct {
	w      io.Writer
	levels []logrus.Level
	f      logrus.Formatter
}

func (h *writerHook) Levels() []logrus.Level { return h.levels }
func (h *writerHook) Fire(en *logrus.Entry) error {
	b, err := h.f.Format(en)
	if err != nil {
		return err
	}
	_, err = h.w.Write(b)
	return err
}

// libvirtStateDirs hold the per-domain directories libvirt creates for QEMU.
var libvirtStateDirs = config.LibvirtStateDirs

// planEnv is how plans are built under this configuration.
func (s *setup) planEnv(tolerant bool) plan.Env {
	protected := canonical(s.hook.ProtectedPaths)
	return plan.Env{
		Policy:          owner.Policy{Protected: protected, AllowHardlinks: s.hook.AllowHardlinks, ConfigPath: s.hook.Path},
		Sys:             sysfs.Root{Sys: s.hook.SysfsRoot, Dev: s.hook.DevRoot},
		PoolDir:         s.hook.StoragePoolDir,
		MaxDepth:        s.hook.MaxBackingDepth,
		BackingPaths:    canonical(s.hook.BackingPaths),
		AnyBackingOwner: s.hook.BackingAnyOwner,
		RunAs:           s.runAs,
		ResolveLabel:    config.ParseLabel,
		StdioFile:       s.qemu.StdioHandler == "file",
		ParentACL:       s.hook.ParentACL,
		StateDirs:       libvirtStateDirs,
		Tolerant:        tolerant,
	}
}

// runner opens the state directory.
func (s *setup) runner() (*apply.Runner, error) {
	st, err := journal.Open(s.hook.StateDir, s.hook.LockTimeout)
	if err != nil {
		return nil, withCode(ExitState, err)
	}
	return &apply.Runner{Store: st, Log: s.log, DryRun: s.hook.DryRun, Cooperative: s.qemu.Mode() == config.Cooperative}, nil
}

// canonical resolves configured directories the way handles' paths are
// resolved, so "/var/run" protects what "/run" names. A path that does not
// exist is kept as written (and also protects what may appear there).
func canonical(dirs []string) []string {
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		out = append(out, d)
		if r, err := filepath.EvalSymlinks(d); err == nil && r != d {
			out = append(out, r)
		}
	}
	return out
}
