package cli

import "github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"

// SetDoctorPaths points doctor at a test's hook path and libvirt state
// directories; the returned func puts the real ones back.
func SetDoctorPaths(hook string, dirs []string) func() {
	oldHook, oldDirs := hookPath, stateDirs
	hookPath, stateDirs = hook, dirs
	return func() { hookPath, stateDirs = oldHook, oldDirs }
}

// SetRunDir points grant at a test's libvirt run directory; the returned
// func puts the real one back.
func SetRunDir(dir string) func() {
	old := libvirtRunDir
	libvirtRunDir = dir
	return func() { libvirtRunDir = old }
}

// The test binary is not the hook: a prepare must not start it as the
// watcher. Tests that need a watcher run one in-process (RunWatcher).
var realWatcherSpawn = watcherSpawn

func init() { watcherSpawn = func(*setup) error { return nil } }

// SpawnWatcher runs the real watcher start for stateDir with exe as the
// program (`exe watch`).
func SpawnWatcher(stateDir, exe string) error {
	old := watcherExe
	watcherExe = func() (string, error) { return exe, nil }
	defer func() { watcherExe = old }()
	return realWatcherSpawn(&setup{hook: config.Hook{StateDir: stateDir}})
}

// JournalKnows is the watcher's question to the journal.
var JournalKnows = journalKnows

// SetLiveDirs replaces the directories every cooperative domain's record
// names besides its own; the returned func puts the real ones back.
func SetLiveDirs(dirs []string) func() {
	old := liveDirs
	liveDirs = dirs
	return func() { liveDirs = old }
}

// ParseReason is parseReason, for the table test.
var ParseReason = parseReason
