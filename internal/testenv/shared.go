package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// SharedEnv names the variable that points at the shared directory (the
// corpus of libvirt's domain XMLs and libvirt's reference files). Unset,
// the directory is <repo root>/../shared.
const SharedEnv = "LIBVIRT_DAC_HOOK_SHARED"

// ErrNoShared means the shared directory is absent.
var ErrNoShared = errors.New("shared directory not found")

// LookupShared returns the shared directory, or an error wrapping
// ErrNoShared when it is absent. Use it where the directory is optional
// (a fuzz seed); tests that need it call SharedDir.
func LookupShared() (string, error) {
	dir := os.Getenv(SharedEnv)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(filepath.Dir(root), "shared")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrNoShared, dir, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%w: %s is not a directory", ErrNoShared, dir)
	}
	return dir, nil
}

// SharedDir returns the shared directory: $LIBVIRT_DAC_HOOK_SHARED, or
// else <repo root>/../shared. When it is absent the test skips, except
// under CI=true, where a missing corpus would silently drop tests, so the
// test fails instead.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := LookupShared()
	if err == nil {
		return dir
	}
	msg := fmt.Sprintf("../shared not found: set %s to the shared directory with the corpus of domain XMLs (%s)", SharedEnv, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// repoRoot is the nearest directory upwards from the working directory
// (a test's package directory) that holds go.mod.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}
