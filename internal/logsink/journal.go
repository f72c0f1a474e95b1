package logsink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// journalHook sends entries to journald in its native protocol: one
// datagram per entry, one FIELD=value per line, so every logrus field
// becomes a journal field (DOMAIN, OP, PATH, FROM, TO, ...) that
// journalctl can match. It is written against x/sys/unix rather than
// github.com/coreos/go-systemd/v22/journal, which imports package net (the
// cost syslogHook avoids) and sends only to a fixed socket path.
type journalHook struct{ socketSink }

// newJournalHookAt connects to journald's socket at path.
func newJournalHookAt(path, tag string) (*journalHook, error) {
	s, err := dialSink(path, tag)
	if err != nil {
		return nil, err
	}
	return &journalHook{s}, nil
}

// priority maps a logrus level to a syslog severity.
func priority(l logrus.Level) int {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return 2
	case logrus.ErrorLevel:
		return 3
	case logrus.WarnLevel:
		return 4
	case logrus.DebugLevel, logrus.TraceLevel:
		return 7
	}
	return 6
}

func (h *journalHook) Fire(e *logrus.Entry) error {
	b, err := journalEntry(e, h.tag, h.f)
	if err != nil {
		return err
	}
	err = unix.Send(h.fd, b, 0)
	if errors.Is(err, unix.EMSGSIZE) || errors.Is(err, unix.ENOBUFS) {
		// journald takes an entry too big for a datagram as a sealed
		// memfd passed over the socket.
		err = h.sendFd(b)
	}
	return dropped(err)
}

// dropped turns "the log daemon's queue is full" into success: the entry
// is lost, as the non-blocking socket intends, and logrus does not print a
// "Failed to fire hook" line on stderr, which in hook mode libvirt would
// show as the hook's error.
func dropped(err error) error {
	if errors.Is(err, unix.EAGAIN) {
		return nil
	}
	return err
}

func (h *journalHook) sendFd(b []byte) error {
	fd, err := unix.MemfdCreate("journal-entry", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(fd) }()
	for off := 0; off < len(b); {
		n, err := unix.Write(fd, b[off:])
		if err != nil {
			return err
		}
		off += n
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return err
	}
	return unix.Sendmsg(h.fd, nil, unix.UnixRights(fd), nil, 0)
}

// journalEntry renders e as a native-protocol datagram. MESSAGE is the
// same text line syslog gets; the fields follow, upper-cased, and an
// owner "UID:GID" in from/to/found is split into FROM_UID and FROM_GID
// (and so on) so queries can match one number.
func journalEntry(e *logrus.Entry, tag string, f logrus.Formatter) ([]byte, error) {
	msg, err := f.Format(e)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	field := func(k, v string) {
		if strings.ContainsRune(v, '\n') {
			b.WriteString(k)
			b.WriteByte('\n')
			var n [8]byte
			binary.LittleEndian.PutUint64(n[:], uint64(len(v)))
			b.Write(n[:])
			b.WriteString(v)
			b.WriteByte('\n')
			return
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	field("MESSAGE", strings.TrimRight(string(msg), "\n"))
	field("PRIORITY", strconv.Itoa(priority(e.Level)))
	field("SYSLOG_IDENTIFIER", tag)
	field("SYSLOG_FACILITY", "3")
	field("SYSLOG_PID", strconv.Itoa(os.Getpid()))
	if id := messageID(e.Message); id != "" {
		field("MESSAGE_ID", id)
	}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := journalField(k)
		if name == "" {
			continue
		}
		v := fieldValue(e.Data[k])
		field(name, v)
		switch name {
		case "FROM", "TO", "FOUND":
			if u, g, ok := strings.Cut(v, ":"); ok && isUint(u) && isUint(g) {
				field(name+"_UID", u)
				field(name+"_GID", g)
			}
		}
	}
	return b.Bytes(), nil
}

// journalField turns a logrus key into a journal field name: upper case
// letters, digits and underscores, not starting with one (those are
// journald's trusted fields) nor with a digit. Names of fields journald or
// this hook sets itself get a LOG_ prefix so an entry cannot forge them.
func journalField(k string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(k) {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_0123456789")
	if len(s) > 64 {
		s = s[:64]
	}
	switch s {
	case "", "MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "SYSLOG_PID", "CODE_FILE", "CODE_LINE", "CODE_FUNC":
		if s == "" {
			return ""
		}
		return "LOG_" + s
	}
	return s
}

func fieldValue(v any) string {
	if err, ok := v.(error); ok {
		return err.Error()
	}
	return fmt.Sprint(v)
}

func isUint(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
