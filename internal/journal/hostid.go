package journal

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"
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
// when there is none yet; it creates nothing.
func ReadHostID(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "host-id"))
	if err != nil {
		return ""
	}
	if id := strings.TrimSpace(string(b)); id != "" && !strings.ContainsAny(id, " ,/\x00\n") {
		return id
	}
	return ""
}
