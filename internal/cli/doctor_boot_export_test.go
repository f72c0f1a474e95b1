package cli

// SetSystemdRoot points doctor's boot unit check at a test's tree; the
// returned func puts the real root back.
func SetSystemdRoot(root string) func() {
	old := systemdRoot
	systemdRoot = root
	return func() { systemdRoot = old }
}
