package cli

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/reclaim"
)

// logTag is the syslog identifier of every entry: `journalctl -t
// libvirt-dac-hook` finds them.
const logTag = "libvirt-dac-hook"

// journalSocket is where journald reads native-protocol datagrams.
var journalSocket = "/run/systemd/journal/socket"

// syslogSocket is the local syslog socket, used where journald is absent.
var syslogSocket = "/dev/log"

// newLogger configures logging once: in hook mode stderr gets only errors
// (libvirt appends hook stderr to its own error message, so it must stay
// one line), while every change goes to the journal (or syslog) and the
// optional log file. By hand, stderr gets everything at the configured
// level.
func newLogger(e *env, h config.Hook, hookMode bool, s *setup) *logrus.Logger {
	log := logrus.New()
	// Every sink is a hook with its own formatter; the logger's own output
	// is discarded, and formatting each entry for it too cost a fifth of
	// the logging.
	log.SetOutput(io.Discard)
	log.SetFormatter(discardFormatter{})
	level, err := logrus.ParseLevel(h.LogLevel)
	if err != nil {
		level = logrus.InfoLevel
	}
	log.SetLevel(level)
	journald := false
	if h.Syslog {
		if hk, err := newJournalHookAt(journalSocket, logTag); err == nil {
			log.AddHook(hk)
			s.close = append(s.close, func() { _ = hk.Close() })
			journald = true
		} else if hk, err := newSyslogHookAt(syslogSocket, logTag); err == nil {
			log.AddHook(hk)
			s.close = append(s.close, func() { _ = unix.Close(hk.fd) })
		}
	}
	// Run by a systemd unit (the boot unit), stderr is itself a journal
	// stream: every line would be in the journal twice, once without
	// fields.
	if !hookMode && !(journald && e.stderr == os.Stderr && stderrIsJournal()) {
		log.AddHook(&writerHook{w: e.stderr, levels: levelsUpTo(level), f: lineFormatter(false)})
	}
	if h.LogFile != "" {
		// O_NONBLOCK|O_NOFOLLOW: a FIFO or symlink planted at log_file must
		// not hang the hook (and libvirtd with it) or redirect its writes.
		if fd, err := unix.Open(h.LogFile, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o600); err == nil {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				f := os.NewFile(uintptr(fd), h.LogFile)
				log.AddHook(&writerHook{w: f, levels: levelsUpTo(level), f: lineFormatter(true)})
				s.close = append(s.close, func() { _ = f.Close() })
			} else {
				_ = unix.Close(fd)
			}
		}
	}
	return log
}

// lineFormatter is the formatter of every sink that takes lines of text
// (stderr, syslog, the log file, journald's MESSAGE): logrus's key=value
// text with every value that is not a plain word quoted as a Go string,
// so a newline, a carriage return, an escape sequence or a "key=value"
// inside a path or a backing file name an image header gave is written
// as \n, \r, \x1b or inside quotes and cannot forge a line or a field.
// Colours stay off: logrus writes the message unquoted in colour mode.
func lineFormatter(timestamps bool) logrus.Formatter {
	return &logrus.TextFormatter{DisableColors: true, DisableTimestamp: !timestamps, FullTimestamp: timestamps}
}

// stderrIsJournal reports whether stderr is the journal stream systemd
// connected ($JOURNAL_STREAM is its "DEV:INO").
func stderrIsJournal() bool {
	v := os.Getenv("JOURNAL_STREAM")
	if v == "" {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(2, &st); err != nil {
		return false
	}
	return v == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func levelsUpTo(top logrus.Level) []logrus.Level {
	var out []logrus.Level
	for _, l := range logrus.AllLevels {
		if l <= top {
			out = append(out, l)
		}
	}
	return out
}

// discardFormatter formats nothing, for the discarded output.
type discardFormatter struct{}

func (discardFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

// writerHook sends entries to a writer with its own formatter.
type writerHook struct {
	w      io.Writer
	levels []logrus.Level
	f      logrus.Formatter
}

func (h *writerHook) Levels() []logrus.Level { return h.levels }
func (h *writerHook) Fire(en *logrus.Entry) error {
	b, err := h.f.Format(en)
	if err != nil {
		return err
	}
	_, err = h.w.Write(b)
	return err
}

// Message IDs: one per kind of event, so `journalctl MESSAGE_ID=...` finds
// every event of a kind whatever its wording becomes. They are random
// 128-bit ids, fixed forever once released; the README lists them.
const (
	MsgChown             = "4c2ab2fb3a26493fb492cf3a6a804aee"
	MsgACLAdded          = "fa0d0499b6cb4099ae8fb070dbf44557"
	MsgACLRemoved        = "4728f05917b3442289ab73fed670a194"
	MsgPrepareRefused    = "2e40ad9024d44cea91c84fa871ffb3f6"
	MsgPrepareFailed     = "5c8ce4ee4bdd4bd0a6a051e736a2cc77"
	MsgReleaseIncomplete = "3d6014bb1d3a4c15bdebe8eab2def54f"
	MsgGone              = "9b740ee4c8234adc974c790c5925b48f"
	MsgLeftAlone         = "19776f9215dc407e891954b27a297b1f"
	MsgDryRun            = "e9ab2dea74f940ac98224843be9c8622"
	MsgMigrated          = "392267f4b9ed4e158b4b505e0369f78f"
	MsgBootRestore       = "b0a69d17bf9c44e288faba0c004a76c2"
	MsgACLMaskWidened    = "e0fc3af35a5b4044b1b235d1b27fd1bd"
	MsgReclaim           = "5071ef24075c48e4905f49c9fd24889e"
	MsgReclaimFailed     = "e8307c477b8c4dd39905e573c41b0a4f"
	MsgPermsRestored     = "1e3c539e0c914d23a753e1cb6f97d6fe"
)

// messageIDs maps the fixed messages the hook logs to their kind (fields
// carry the variable part).
var messageIDs = map[string]string{
	"chown":              MsgChown,
	"acl added":          MsgACLAdded,
	"acl removed":        MsgACLRemoved,
	"prepare refused":    MsgPrepareRefused,
	"prepare failed":     MsgPrepareFailed,
	"release incomplete": MsgReleaseIncomplete,
	"release of files labelled during the run incomplete":                                     MsgReleaseIncomplete,
	"the ACL mask gained x, which also lets these entries search the directory until release": MsgACLMaskWidened,
	"still open by a running QEMU: left with its owner":                                       MsgLeftAlone,
	apply.BootSummary:       MsgBootRestore,
	reclaim.Summary:         MsgReclaim,
	"reclaim failed":        MsgReclaimFailed,
	"mode and ACL put back": MsgPermsRestored,
}

// messageRules give a kind to messages release words per file ("path now
// names another file (inode ...): replaced or moved; left alone").
var messageRules = []struct {
	prefix, suffix, id string
}{
	{"dry run: ", "", MsgDryRun},
	{"", "; nothing to restore", MsgGone},
	{"", "left alone", MsgLeftAlone},
	{"migrated", "", MsgMigrated},
	{"still used by another host", "", MsgMigrated},
}

// messageID returns the kind of a message, "" for one without.
func messageID(msg string) string {
	if id, ok := messageIDs[msg]; ok {
		return id
	}
	for _, r := range messageRules {
		if strings.HasPrefix(msg, r.prefix) && strings.HasSuffix(msg, r.suffix) {
			return r.id
		}
	}
	return ""
}

// journalHook sends entries to journald in its native protocol: one
// datagram per entry, one FIELD=value per line, so every logrus field
// becomes a journal field (DOMAIN, OP, PATH, FROM, TO, ...) that
// journalctl can match. It is written against x/sys/unix rather than
// github.com/coreos/go-systemd/v22/journal, which imports package net (the
// cost syslogHook avoids) and sends only to a fixed socket path.
type journalHook struct {
	fd  int
	tag string
	f   logrus.Formatter
}

// newJournalHookAt connects to journald's socket at path. Like syslogHook
// the socket is non-blocking: an entry is dropped rather than hanging the
// hook when journald's queue is full.
func newJournalHookAt(path, tag string) (*journalHook, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	return &journalHook{fd: fd, tag: tag, f: lineFormatter(false)}, nil
}

func (h *journalHook) Close() error { return unix.Close(h.fd) }

func (h *journalHook) Levels() []logrus.Level { return logrus.AllLevels }

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
