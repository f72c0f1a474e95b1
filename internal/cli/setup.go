package cli

import (
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cluster"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/logsink"
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
	log, closeLog := logsink.New(logsink.Config{Level: h.LogLevel, Syslog: h.Syslog, File: h.LogFile, Hook: hookMode, Stderr: e.stderr})
	s.log = log
	s.close = append(s.close, closeLog)
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
	return s.runnerOn(st), nil
}

// byHand is the start of every command that gives owners back by hand
// (restore, forget-host): the configuration and a Runner on its state
// directory that acts even when dry_run is on, since dry_run is for hook
// mode. The caller closes the setup.
func byHand(e *env) (*setup, *apply.Runner, error) {
	s, err := loadSetup(e, false)
	if err != nil {
		return nil, nil, err
	}
	r, err := s.runner()
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	r.DryRun = false
	return s, r, nil
}

// liveDirs replaces apply.DefaultLiveDirs when set: tests point it at
// their own trees.
var liveDirs []string

// runnerOn is the Runner of this configuration on an opened state
// directory.
func (s *setup) runnerOn(st *journal.Store) *apply.Runner {
	return &apply.Runner{Store: st, Log: s.log, DryRun: s.hook.DryRun, Cooperative: s.qemu.Mode() == config.Cooperative,
		Cluster: s.clusterDirs(), LiveDirs: liveDirs}
}

// watchesLive says whether hook mode records, for the watcher, what
// libvirt may label during a run: cooperative mode with live_watch on,
// and not a dry run.
func (s *setup) watchesLive() bool {
	return s.qemu.Mode() == config.Cooperative && !s.hook.DryRun && s.hook.LiveWatch
}

// clusterDirs says where this host keeps the records of files on shared
// filesystems.
func (s *setup) clusterDirs() cluster.Dirs {
	return cluster.Dirs{Dir: s.hook.ClusterDir, Shared: s.qemu.SharedFilesystems}
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
