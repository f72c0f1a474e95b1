package logsink

import (
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// syslogHook sends entries to the local syslog socket (/dev/log, which
// journald serves) as RFC 3164 datagrams, facility daemon. It replaces
// log/syslog, whose import of package net costs every hook call (even an
// ignored event) the net package's initialisation and ~1 MB of binary.
type syslogHook struct{ socketSink }

// newSyslogHookAt connects to the syslog socket at path.
func newSyslogHookAt(path, tag string) (*syslogHook, error) {
	s, err := dialSink(path, tag)
	if err != nil {
		return nil, err
	}
	return &syslogHook{s}, nil
}

func (h *syslogHook) Fire(e *logrus.Entry) error {
	b, err := h.f.Format(e)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("<%d>%s %s[%d]: %s", 3<<3|priority(e.Level), time.Now().Format(time.Stamp), h.tag, os.Getpid(), b)
	_, err = unix.Write(h.fd, []byte(msg))
	return dropped(err)
}
