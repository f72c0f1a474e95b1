package cli

// SetLiveDirs replaces the directories every cooperative domain's record
// names besides its own (apply.DefaultLiveDirs); the returned func puts
// the real ones back.
func SetLiveDirs(dirs []string) func() {
	old := liveDirs
	liveDirs = dirs
	return func() { liveDirs = old }
}

// ParseReason is parseReason, for the table test.
var ParseReason = parseReason
