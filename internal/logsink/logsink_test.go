package logsink

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/reclaim"
)

// fakeJournal is a datagram socket standing in for journald's.
type fakeJournal struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

func newFakeJournal(t *testing.T) *fakeJournal {
	t.Helper()
	p := filepath.Join(t.TempDir(), "socket")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &fakeJournal{t: t, path: p, conn: conn}
}

// datagram receives one datagram as it was sent: a syslog line.
func (j *fakeJournal) datagram() string {
	j.t.Helper()
	buf := make([]byte, 4096)
	if err := j.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		j.t.Fatal(err)
	}
	n, err := j.conn.Read(buf)
	if err != nil {
		j.t.Fatalf("nothing on the socket: %v", err)
	}
	return string(buf[:n])
}

// next receives one entry, reading a passed memfd the way journald does,
// and parses it.
func (j *fakeJournal) next() map[string]string {
	j.t.Helper()
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(4))
	if err := j.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		j.t.Fatal(err)
	}
	n, oobn, _, _, err := j.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		j.t.Fatalf("no journal entry received: %v", err)
	}
	data := buf[:n]
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			j.t.Fatalf("control message: %v (%d)", err, len(msgs))
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			j.t.Fatalf("passed fds: %v %v", fds, err)
		}
		f := os.NewFile(uintptr(fds[0]), "memfd")
		defer f.Close()
		// The descriptor shares the sender's offset, at the end: read
		// from the start, as journald does.
		if _, err := f.Seek(0, 0); err != nil {
			j.t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(f); err != nil {
			j.t.Fatal(err)
		}
		data = b.Bytes()
	}
	fields, err := parseNative(data)
	if err != nil {
		j.t.Fatalf("entry %q: %v", data, err)
	}
	return fields
}

// parseNative parses journald's native protocol, both framings.
func parseNative(b []byte) (map[string]string, error) {
	m := make(map[string]string)
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return nil, errTest("no newline")
		}
		line := b[:nl]
		if k, v, ok := bytes.Cut(line, []byte("=")); ok {
			m[string(k)] = string(v)
			b = b[nl+1:]
			continue
		}
		rest := b[nl+1:]
		if len(rest) < 8 {
			return nil, errTest("short length")
		}
		n := binary.LittleEndian.Uint64(rest)
		if uint64(len(rest)) < 8+n+1 || rest[8+n] != '\n' {
			return nil, errTest("bad binary value")
		}
		m[string(line)] = string(rest[8 : 8+n])
		b = rest[8+n+1:]
	}
	return m, nil
}

type errTest string

func (e errTest) Error() string { return string(e) }

func TestJournalHook(t *testing.T) {
	j := newFakeJournal(t)
	h, err := newJournalHookAt(j.path, tag)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.AddHook(h)

	for _, tc := range []struct {
		name string
		log  func()
		want map[string]string
	}{
		{
			name: "chown",
			log: func() {
				log.WithFields(logrus.Fields{"domain": "vm1", "op": "release", "path": "/img/a.raw", "from": "64055:64055", "to": "1000:100"}).Info("chown")
			},
			want: map[string]string{
				"MESSAGE_ID": MsgChown, "PRIORITY": "6", "SYSLOG_IDENTIFIER": "libvirt-dac-hook",
				"DOMAIN": "vm1", "OP": "release", "PATH": "/img/a.raw",
				"FROM": "64055:64055", "FROM_UID": "64055", "FROM_GID": "64055",
				"TO": "1000:100", "TO_UID": "1000", "TO_GID": "100",
				"MESSAGE": `level=info msg=chown domain=vm1 from="64055:64055" op=release path=/img/a.raw to="1000:100"`,
			},
		},
		{
			name: "refused, with an error of two lines",
			log: func() {
				log.WithField("domain", "vm2").WithError(errTest("line one\nline two")).Error("prepare refused")
			},
			want: map[string]string{"MESSAGE_ID": MsgPrepareRefused, "PRIORITY": "3", "DOMAIN": "vm2", "ERROR": "line one\nline two"},
		},
		{
			name: "acl removed",
			log:  func() { log.WithField("acl", "user:64055:--x").Warn("acl removed") },
			want: map[string]string{"MESSAGE_ID": MsgACLRemoved, "PRIORITY": "4", "ACL": "user:64055:--x"},
		},
		{
			name: "dry run",
			log:  func() { log.Info("dry run: would chown") },
			want: map[string]string{"MESSAGE_ID": MsgDryRun},
		},
		{
			name: "no kind, a field that would forge MESSAGE_ID",
			log:  func() { log.WithField("message_id", "x").Info("something else") },
			want: map[string]string{"MESSAGE_ID": "", "LOG_MESSAGE_ID": "x"},
		},
		{
			name: "too big for one datagram: passed as a memfd",
			log:  func() { log.WithField("path", strings.Repeat("p", 600<<10)).Info("chown") },
			want: map[string]string{"MESSAGE_ID": MsgChown, "PATH": strings.Repeat("p", 600<<10)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.log()
			got := j.next()
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %.80q, want %.80q", k, got[k], v)
				}
			}
			if got["SYSLOG_PID"] == "" {
				t.Errorf("no SYSLOG_PID in %v", got)
			}
		})
	}
}

// TestNewPrefersJournal: with journald's socket present, entries go
// there in the native protocol; without it, to the syslog socket.
func TestNewPrefersJournal(t *testing.T) {
	j := newFakeJournal(t)
	sl := newFakeJournal(t) // a datagram socket serves as /dev/log too
	cfg := Config{Level: "info", Syslog: true, Hook: true, Stderr: io.Discard, JournalSocket: j.path, SyslogSocket: sl.path}

	log, closeLog := New(cfg)
	log.WithField("domain", "vm1").Info("chown")
	if got := j.next(); got["DOMAIN"] != "vm1" || got["MESSAGE_ID"] != MsgChown {
		t.Errorf("journal got %v", got)
	}
	closeLog()

	cfg.JournalSocket = filepath.Join(t.TempDir(), "absent")
	log, closeLog = New(cfg)
	log.Info("chown")
	if got := sl.datagram(); !strings.HasPrefix(got, "<30>") || !strings.Contains(got, "libvirt-dac-hook[") {
		t.Errorf("syslog got %q", got)
	}
	closeLog()
}

func TestJournalField(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"domain", "DOMAIN"},
		{"given_back", "GIVEN_BACK"},
		{"from-uid", "FROM_UID"},
		{"_boot_id", "BOOT_ID"},
		{"9lives", "LIVES"},
		{"priority", "LOG_PRIORITY"},
		{"", ""},
		{"__", ""},
	} {
		if got := journalField(tc.in); got != tc.want {
			t.Errorf("journalField(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStderrIsJournal(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Fstat(2, &st); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want bool
	}{
		{"", false},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"garbage", false},
	} {
		t.Setenv("JOURNAL_STREAM", tc.env)
		if got := stderrIsJournal(); got != tc.want {
			t.Errorf("JOURNAL_STREAM=%q: stderrIsJournal() = %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestMessageID(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"chown", MsgChown},
		{"acl added", MsgACLAdded},
		{"acl removed", MsgACLRemoved},
		{"prepare refused", MsgPrepareRefused},
		{"prepare failed", MsgPrepareFailed},
		{"release incomplete", MsgReleaseIncomplete},
		{"file is gone; nothing to restore", MsgGone},
		{"directory is gone; nothing to restore", MsgGone},
		{"path now names another file (inode 1:2, recorded 1:3): replaced or moved; left alone", MsgLeftAlone},
		{"owner changed by someone else while held (found 0:0, QEMU had 64055:64055): left alone", MsgLeftAlone},
		{"migrated: left with QEMU's owner on the shared filesystem", MsgMigrated},
		{"still open by a running QEMU (pid 4242): left with its owner", MsgLeftAlone},
		{"on a filesystem shared between hosts: left with its owner (another host may use it)", MsgLeftAlone},
		{"dry run: would chown", MsgDryRun},
		{apply.BootSummary, MsgBootRestore},
		{reclaim.Summary, MsgReclaim},
		{"reclaim failed", MsgReclaimFailed},
		{"something else", ""},
	} {
		if got := messageID(tc.msg); got != tc.want {
			t.Errorf("messageID(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
	// Every id is 128 bits of hex, and no two kinds share one.
	seen := map[string]string{}
	for _, id := range allIDs {
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Errorf("message id %q is not 32 hex digits", id)
		}
		if seen[id] != "" {
			t.Errorf("message id %s used twice", id)
		}
		seen[id] = id
	}
}

// allIDs is every message id, as the man page must list them.
var allIDs = []string{MsgChown, MsgACLAdded, MsgACLRemoved, MsgPrepareRefused, MsgPrepareFailed, MsgReleaseIncomplete, MsgGone, MsgLeftAlone, MsgDryRun, MsgMigrated, MsgBootRestore, MsgACLMaskWidened, MsgReclaim, MsgReclaimFailed, MsgPermsRestored}

// TestManPageListsMessageIDs: admins match on the ids the man page
// gives, so it lists every id the journal entries carry and no other.
func TestManPageListsMessageIDs(t *testing.T) {
	b, err := os.ReadFile("../../install/libvirt-dac-hook.8")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, m := range regexp.MustCompile(`\\fB([0-9a-f]{32})\\fR`).FindAllSubmatch(b, -1) {
		listed = append(listed, string(m[1]))
	}
	want := slices.Clone(allIDs)
	slices.Sort(want)
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("man page lists message ids %v, want %v", listed, want)
	}
}

// TestLogSinksQuoteOutsideValues: a backing file name from a user's
// qcow2 header, with a newline and a forged entry after it, is logged as
// a path and in a message. No sink gets a second line or the forged
// fields unquoted: not journald's MESSAGE, not syslog, not the log file,
// not stderr.
func TestLogSinksQuoteOutsideValues(t *testing.T) {
	const forged = "level=info msg=chown path=/etc/shadow"
	evil := "/img/b.raw\n" + forged + "\r\x1b[2K\u2028"
	logFile := filepath.Join(t.TempDir(), "hook.log")
	j := newFakeJournal(t)
	var stderr bytes.Buffer
	cfg := Config{Level: "info", Syslog: true, File: logFile, Stderr: &stderr, JournalSocket: j.path}
	emit := func(log *logrus.Logger) {
		log.WithFields(logrus.Fields{"domain": "vm1", "op": "prepare", "path": evil, "from": "1000:1000", "to": "64055:64055"}).Info("chown")
		log.WithField("path", "/img/top.qcow2").Warn("renamed from " + evil)
	}
	oneLine := func(sink, got string) {
		t.Helper()
		if strings.Count(strings.TrimSuffix(got, "\n"), "\n") != 0 || strings.ContainsAny(got, "\r\x1b\u2028") {
			t.Errorf("%s got more than one line, or a control character: %q", sink, got)
		}
		if strings.Contains(got, " "+forged) || strings.HasPrefix(got, forged) {
			t.Errorf("%s got the forged entry unquoted: %q", sink, got)
		}
	}

	log, closeLog := New(cfg)
	emit(log)
	for range 2 {
		got := j.next()
		oneLine("journald MESSAGE", got["MESSAGE"])
	}
	closeLog()
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Errorf("stderr got %d lines for 2 entries: %q", len(lines), stderr.String())
	}
	for _, l := range lines {
		oneLine("stderr", l+"\n")
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 {
		t.Errorf("log file got %d lines for 2 entries: %q", len(lines), b)
	}
	for _, l := range lines {
		oneLine("log file", l+"\n")
	}

	sl := newFakeJournal(t)
	cfg = Config{Level: "info", Syslog: true, Hook: true, Stderr: io.Discard,
		JournalSocket: filepath.Join(t.TempDir(), "absent"), SyslogSocket: sl.path}
	log, closeLog = New(cfg)
	emit(log)
	for range 2 {
		oneLine("syslog", sl.datagram())
	}
	closeLog()
}

// TestNewStderr: by hand stderr gets every entry at the level; in hook
// mode nothing, since libvirt shows the hook's stderr as its error.
func TestNewStderr(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"by hand", Config{Level: "info"}, "level=info msg=chown path=/x\n"},
		{"by hand, above the level", Config{Level: "warn"}, ""},
		{"hook mode", Config{Level: "info", Hook: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			tc.cfg.Stderr = &stderr
			log, closeLog := New(tc.cfg)
			defer closeLog()
			log.WithField("path", "/x").Info("chown")
			if got := stderr.String(); got != tc.want {
				t.Errorf("stderr = %q, want %q", got, tc.want)
			}
		})
	}
}
