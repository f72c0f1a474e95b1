package cli

import (
	"errors"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

// Exit codes, documented in --help, the README and the man page.
const (
	ExitOK     = 0 // done (or nothing to do)
	ExitFailed = 1 // prepare refused or failed (the VM does not start); restore incomplete; doctor found problems
	ExitUsage  = 2 // wrong arguments or unknown command
	ExitInput  = 3 // the domain XML (or a file given) is unusable
	ExitConfig = 4 // qemu.conf or the hook's config is unreadable or invalid
	ExitState  = 5 // the state lock timed out or the state file is damaged
)

const exitHelp = `Exit status:
  0  done, or nothing to do
  1  prepare refused or failed (libvirt does not start the VM); restore incomplete; doctor found problems
  2  wrong arguments or unknown command
  3  unusable domain XML or input file
  4  unreadable or invalid qemu.conf or hook config
  5  state lock timed out, or state file damaged
`

// codedError carries an exit code.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code, err}
}

func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	var unusable *journal.UnusableError
	if errors.As(err, &unusable) || errors.Is(err, journal.ErrLockTimeout) || errors.Is(err, journal.ErrDamaged) {
		return ExitState
	}
	return ExitFailed
}
