package journal

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"
)

// HostID names this host in the cluster records of shared files: a random
// id made once and kept in the state directory (host-id), because cloned
// hypervisors often share /etc/machine-id. machine-id is the fallback when
// the file cannot be made.
func (s *Store) HostID() string {
	p := filepath.Join(s.Dir, "host-id")
	if id := ReadHostID(s.Dir); id != "" {
		return id
	}
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err == nil {
		id := hex.EncodeToString(buf)
		if err := renameio.WriteFile(p, []byte(id+"\n"), 0o600); err == nil {
			return id
		}
	}
	return machineID()
}

// readNoFollow reads at most limit bytes of the regular file p, never
// through a symlink at p: a link planted there must not make the hook
// publish another file's first line in cluster records. (renameio replaces
// such a link when it writes, never following it.)
func readNoFollow(p string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read only
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// machineID identifies this host across boots.
func machineID() string {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(p); err == nil {
			if id := strings.TrimSpace(string(b)); id != "" && !strings.ContainsAny(id, " ,/\x00") {
				return id
			}
		}
	}
	h, _ := os.Hostname()
	return strings.NewReplacer(" ", "_", ",", "_", "/", "_").Replace(h)
}

// ReadHostID returns the host id kept in the state directory dir, or ""
// when there is none yet; it creates nothing and follows no symlink.
func ReadHostID(dir string) string {
	b, err := readNoFollow(filepath.Join(dir, "host-id"), 256)
	if err != nil {
		return ""
	}
	if id := strings.TrimSpace(string(b)); id != "" && !strings.ContainsAny(id, " ,/\x00\n") {
		return id
	}
	return ""
}
