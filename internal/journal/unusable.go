package journal

// UnusableError marks an error that left the journal unusable to a call:
// its directory could not be opened, locked, read or written. Code that
// uses the journal on a command's behalf wraps such errors with Unusable,
// so the command can tell them (exit status 5) from a file's.
type UnusableError struct{ Err error }

func (e *UnusableError) Error() string { return e.Err.Error() }
func (e *UnusableError) Unwrap() error { return e.Err }

// Unusable wraps err as an UnusableError; nil stays nil.
func Unusable(err error) error {
	if err == nil {
		return nil
	}
	return &UnusableError{err}
}
