package cli

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
type syslogHook struct {
	fd  int
	tag string
	f   logrus.Formatter
}

// newSyslogHookAt connects to the syslog socket at path. The socket is
// non-blocking: when the log daemon is stuck and its queue full, a line is
// dropped rather than hanging the hook (and libvirtd, which waits for it).
func newSyslogHookAt(path, tag string) (*syslogHook, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		_ = unix.Close(fd) // never connected: nothing to flush
		return nil, err
	}
	return &syslogHook{fd: fd, tag: tag, f: lineFormatter(false)}, nil
}

func (h *syslogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *syslogHook) Fire(e *logrus.Entry) error {
	sev := 6 // info
	switch e.Level {
	case logrus.PanicLevel, logrus.FatalLevel:
		sev = 2
	case logrus.ErrorLevel:
		sev = 3
	case logrus.WarnLevel:
		sev = 4
	case logrus.DebugLevel, logrus.TraceLevel:
		sev = 7
	}
	b, err := h.f.Format(e)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("<%d>%s %s[%d]: %s", 3<<3|sev, time.Now().Format(time.Stamp), h.tag, os.Getpid(), b)
	_, err = unix.Write(h.fd, []byte(msg))
	return dropped(err)
}
