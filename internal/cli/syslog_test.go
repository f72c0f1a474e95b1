package cli

import (
	"net"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestSyslogHook sends one entry to a datagram socket standing in for
// /dev/log and checks it is an RFC 3164 line with facility daemon.
func TestSyslogHook(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := newSyslogHookAt(sock, "libvirt-dac-hook")
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.AddHook(h)
	log.SetOutput(discard{})
	log.WithField("path", "/x").Warn("chown")
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	want := regexp.MustCompile(`^<28>\w{3} [ \d]\d \d\d:\d\d:\d\d libvirt-dac-hook\[\d+\]: level=warning msg=chown path=/x\n$`)
	if !want.MatchString(got) {
		t.Errorf("syslog line = %q, want it to match %s", got, want)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
