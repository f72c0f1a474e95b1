package watch

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
)

// SocketName is the watcher's socket in the state directory (0700, so
// only root reaches it).
const SocketName = "watch.sock"

// ErrNoWatcher is wrapped when no watcher listens.
var ErrNoWatcher = errors.New("no watcher running")

// request is one handshake: "sync NAME GEN": the watcher reads record
// NAME again (GEN 0: a ping, naming no record), handles every event queued before,
// writes labelled.json, and answers "ok" once the record it holds has
// generation GEN.
type request struct {
	name  string
	gen   int64
	reply chan string
}

func listen(stateDir string) (*net.UnixListener, error) {
	p := filepath.Join(stateDir, SocketName)
	// A socket left by a watcher that was killed; never what a link names.
	if err := unix.Unlink(p); err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("remove old %s: %w", p, err)
	}
	old := unix.Umask(0o077)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", p, err)
	}
	return ln, nil
}

// serve answers handshakes; the loop does the work, between events.
func (w *Watcher) serve(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return // closed: the watcher leaves
		}
		go func() {
			defer func() { _ = c.Close() }()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			req, err := parseRequest(line)
			if err != nil {
				_, _ = fmt.Fprintf(c, "err %s\n", err)
				return
			}
			select {
			case w.reqs <- req:
				_, _ = fmt.Fprintf(c, "%s\n", <-req.reply)
			case <-w.done:
			}
		}()
	}
}

func parseRequest(line string) (request, error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "sync" || !inventory.IsRecordName(f[1]) {
		return request{}, fmt.Errorf("bad request %q", strings.TrimSpace(line))
	}
	gen, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return request{}, fmt.Errorf("bad generation %q", f[2])
	}
	return request{name: f[1], gen: gen, reply: make(chan string, 1)}, nil
}

// answer handles a handshake, once the events queued before it are
// handled (settle).
func (w *Watcher) answer(req request) {
	w.reloadOne(req.name)
	var err error
	if !w.dirty.IsZero() || len(w.pending) > 0 {
		err = w.flush()
	}
	r := w.recs[req.name]
	switch {
	case err != nil:
		req.reply <- "err labelled files not written: " + err.Error()
	case req.gen == 0 && r == nil, r != nil && r.Gen == req.gen:
		req.reply <- "ok"
	case r == nil:
		req.reply <- "err no record of this boot filed as " + req.name
	default:
		req.reply <- fmt.Sprintf("err record %s has generation %d, not %d", req.name, r.Gen, req.gen)
	}
}

// Sync is the handshake of a prepare (gen: the record's generation, just
// written durably) or of a release (gen: the generation of the record it
// is about to read back and remove): it
// returns once the watcher follows the record's directories as written,
// has handled every event queued before, and has written what it saw. It
// waits at most timeout. With no watcher listening the error wraps
// ErrNoWatcher.
func Sync(stateDir, domain string, gen int64, timeout time.Duration) error {
	p := filepath.Join(stateDir, SocketName)
	c, err := net.DialTimeout("unix", p, timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w (%s: %w)", ErrNoWatcher, p, err)
		}
		return fmt.Errorf("watcher %s: %w", p, err)
	}
	defer func() { _ = c.Close() }()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(c, "sync %s %d\n", inventory.NameOf(domain), gen); err != nil {
		return fmt.Errorf("watcher %s: %w", p, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("watcher %s: no answer in %s: %w", p, timeout, err)
	}
	line = strings.TrimSpace(line)
	if line != "ok" {
		return fmt.Errorf("watcher %s: %s", p, strings.TrimPrefix(line, "err "))
	}
	return nil
}

// Ping reports whether a watcher answers for stateDir (a handshake about
// no domain).
func Ping(stateDir string, timeout time.Duration) error {
	return Sync(stateDir, "", 0, timeout)
}
