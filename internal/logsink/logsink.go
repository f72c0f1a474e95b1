package logsink

import (
	"fmt"
	"io"
	"os"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// tag is the syslog identifier of every entry: `journalctl -t
// libvirt-dac-hook` finds them.
const tag = "libvirt-dac-hook"

// The sockets New connects to when Config names none.
const (
	// JournalSocket is where journald reads native-protocol datagrams.
	JournalSocket = "/run/systemd/journal/socket"
	// SyslogSocket is the local syslog socket, used where journald is absent.
	SyslogSocket = "/dev/log"
)

// Config is what New reads: the logging settings of the hook's config
// and how the process was started.
type Config struct {
	// Level is a logrus level name; an unknown one means info.
	Level string
	// Syslog sends every entry to journald, or to syslog where journald's
	// socket cannot be reached.
	Syslog bool
	// File, when set, is appended to, one line per entry with a time.
	File string
	// Hook is hook mode: Stderr gets no entries, since libvirt appends
	// the hook's stderr to its own error message, which must stay one line.
	Hook bool
	// Stderr gets every entry at Level outside hook mode, unless it is
	// the process's own stderr, connected by systemd to the journal that
	// already gets the entries.
	Stderr io.Writer
	// JournalSocket and SyslogSocket replace JournalSocket and
	// SyslogSocket when set.
	JournalSocket, SyslogSocket string
}

// New configures the logger once, with one sink per destination Config
// names. A sink that cannot be opened is left out: logging never stops
// the hook. Its entries go only to the sinks, never to the logger's own
// output. The func returned closes every sink; the logger must not be
// used after it.
func New(cfg Config) (*logrus.Logger, func()) {
	log := logrus.New()
	// Every sink is a hook with its own formatter; the logger's own output
	// is discarded, and formatting each entry for it too would cost a
	// fifth of the logging.
	log.SetOutput(io.Discard)
	log.SetFormatter(discardFormatter{})
	level, err := logrus.ParseLevel(cfg.Level)
	if err != nil {
		level = logrus.InfoLevel
	}
	log.SetLevel(level)
	var closers []func()
	journald := false
	if cfg.Syslog {
		js, ss := orDefault(cfg.JournalSocket, JournalSocket), orDefault(cfg.SyslogSocket, SyslogSocket)
		if hk, err := newJournalHookAt(js, tag); err == nil {
			log.AddHook(hk)
			closers = append(closers, func() { _ = hk.Close() })
			journald = true
		} else if hk, err := newSyslogHookAt(ss, tag); err == nil {
			log.AddHook(hk)
			closers = append(closers, func() { _ = hk.Close() })
		}
	}
	// Run by a systemd unit (the boot unit), stderr is itself a journal
	// stream: every line would be in the journal twice, once without
	// fields.
	if !cfg.Hook && !(journald && cfg.Stderr == os.Stderr && stderrIsJournal()) {
		log.AddHook(&writerHook{w: cfg.Stderr, levels: levelsUpTo(level), f: lineFormatter(false)})
	}
	if cfg.File != "" {
		if f := openLogFile(cfg.File); f != nil {
			log.AddHook(&writerHook{w: f, levels: levelsUpTo(level), f: lineFormatter(true)})
			closers = append(closers, func() { _ = f.Close() })
		}
	}
	return log, func() {
		for _, c := range closers {
			c()
		}
	}
}

// openLogFile opens log_file for appending, or returns nil.
// O_NONBLOCK|O_NOFOLLOW and the check of the descriptor's type: a FIFO or
// symlink planted at log_file must not hang the hook (and libvirtd with
// it) or redirect its writes.
func openLogFile(path string) *os.File {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o600)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), path)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
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

// socketSink is what journalHook and syslogHook share: a datagram socket
// connected to the log daemon, the identifier entries carry, and the
// formatter of their text. The socket is non-blocking: when the daemon is
// stuck and its queue full, an entry is dropped rather than hanging the
// hook (and libvirtd, which waits for it).
type socketSink struct {
	fd  int
	tag string
	f   logrus.Formatter
}

func dialSink(path, tag string) (socketSink, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return socketSink{}, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		_ = unix.Close(fd) // never connected: nothing to flush
		return socketSink{}, err
	}
	return socketSink{fd: fd, tag: tag, f: lineFormatter(false)}, nil
}

func (s socketSink) Close() error { return unix.Close(s.fd) }

func (socketSink) Levels() []logrus.Level { return logrus.AllLevels }
