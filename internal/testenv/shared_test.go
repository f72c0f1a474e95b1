package testenv

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestLookupShared(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		env     string
		want    string
		wantErr error
	}{
		{"set and present", dir, dir, nil},
		{"set and absent", filepath.Join(dir, "missing"), "", ErrNoShared},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(SharedEnv, tc.env)
			got, err := LookupShared()
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("LookupShared() with %s=%q = %q, %v; want %q, %v", SharedEnv, tc.env, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
