package cli

// SetProcRoot points reclaim at a test's process tree; the returned func
// puts the real one back.
func SetProcRoot(p string) func() {
	old := procRoot
	procRoot = p
	return func() { procRoot = old }
}
