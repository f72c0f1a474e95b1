package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/watch"
)

// watcherWait bounds a hook's handshake with the watcher: libvirt waits
// for the hook, and a watcher that hangs must not hang a domain's start.
const watcherWait = 5 * time.Second

// syncWatcher is the handshake of prepare (gen: the record just written)
// and release (the record about to be read back): see watch.Sync. A
// failed one is logged; the hook goes on, with what the watcher saw so
// far.
func syncWatcher(s *setup, name string, gen int64, op string) {
	err := watch.Sync(s.hook.StateDir, name, gen, watcherWait)
	switch {
	case err == nil:
	case errors.Is(err, watch.ErrNoWatcher) && op == "prepare":
		s.log.WithField("domain", name).WithError(err).Warn("no watcher runs (libvirt-dac-hook-watch.service): files libvirt labels during this run keep the owner libvirt leaves them")
	case errors.Is(err, watch.ErrNoWatcher):
	default:
		s.log.WithField("domain", name).WithField("op", op).WithError(err).Warn("watcher did not answer: files libvirt labelled during the run may keep the owner libvirt leaves")
	}
}

func cmdWatch(e *env, args []string) error {
	fs := newFlags(e, "watch", "watch\n\nThe watcher of cooperative mode: follows the directories of running domains and records which files libvirt labels for QEMU during their runs. Run by the init system (libvirt-dac-hook-watch.service) beside libvirtd or virtqemud; runs until stopped.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return withCode(ExitUsage, errors.New("watch takes no arguments"))
	}
	s, err := loadSetup(e, true)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; close(stop) }()
	r, err := s.runner()
	if err != nil {
		return err
	}
	log := s.log.WithField("op", "watch")
	w := &watch.Watcher{
		StateDir: s.hook.StateDir, Log: log,
		Known: apply.JournalKnows(r.Store), BootID: r.Store.BootID,
		Flush:          50 * time.Millisecond,
		DaemonPidFiles: s.hook.DaemonPidFiles,
		Ready: func() {
			log.Info("watcher ready")
			if err := notifyReady(); err != nil {
				log.WithError(err).Warn("systemd not told the watcher is ready")
			}
		},
	}
	return w.Run(stop)
}

// notifyReady tells systemd (Type=notify) that the watcher answers
// handshakes: libvirtd, ordered after it, starts no domain before.
func notifyReady() error {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil // not run by systemd
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify %s: %w", sock, err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		return fmt.Errorf("notify %s: %w", sock, err)
	}
	return nil
}
