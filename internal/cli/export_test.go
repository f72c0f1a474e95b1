package cli

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
func init() { watcherSpawn = func(*setup) error { return nil } }

// JournalKnows is the watcher's question to the journal.
var JournalKnows = journalKnows

// SetLiveDirs replaces the directories every cooperative domain's record
// names besides its own; the returned func puts the real ones back.
func SetLiveDirs(dirs []string) func() {
	old := liveDirs
	liveDirs = dirs
	return func() { liveDirs = old }
}
