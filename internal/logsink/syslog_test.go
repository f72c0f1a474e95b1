package logsink

import (
	"io"
	"regexp"
	"testing"

	"github.com/sirupsen/logrus"
)

// TestSyslogHook sends one entry to a datagram socket standing in for
// /dev/log and checks it is an RFC 3164 line with facility daemon.
func TestSyslogHook(t *testing.T) {
	sl := newFakeJournal(t) // a datagram socket serves as /dev/log too
	h, err := newSyslogHookAt(sl.path, "libvirt-dac-hook")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	log := logrus.New()
	log.AddHook(h)
	log.SetOutput(io.Discard)
	log.WithField("path", "/x").Warn("chown")
	got := sl.datagram()
	want := regexp.MustCompile(`^<28>\w{3} [ \d]\d \d\d:\d\d:\d\d libvirt-dac-hook\[\d+\]: level=warning msg=chown path=/x\n$`)
	if !want.MatchString(got) {
		t.Errorf("syslog line = %q, want it to match %s", got, want)
	}
}
