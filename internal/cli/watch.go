package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/watch"
)

// watcherReady bounds how long a prepare waits for the watcher it
// started to watch the domain's directories.
const watcherReady = 2 * time.Second

// watcherSpawn starts the watcher process, unless another prepare is
// starting one, and waits until it watches the directories of the
// records written so far (it takes its lock only then), so that libvirt,
// which labels and starts QEMU after this prepare, finds it watching: a
// snapshot taken a moment after the start is seen. A watcher that is
// already running picks a new record up from its inotify event, within
// milliseconds, while libvirt is still starting QEMU. Tests replace it,
// because there the executable is the test binary.
var watcherSpawn = func(s *setup) error {
	unlock, spawner := watch.TrySpawnLock(s.hook.StateDir)
	var exited <-chan error
	if spawner {
		defer unlock()
		if !watch.Running(s.hook.StateDir) {
			var err error
			if exited, err = spawnWatcher(); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(watcherReady)
	for !watch.Running(s.hook.StateDir) {
		select {
		case err := <-exited:
			if watch.Running(s.hook.StateDir) {
				return nil // it found another watcher running
			}
			if err == nil {
				return errors.New("watcher exited before watching: see its log lines")
			}
			return fmt.Errorf("watcher exited before watching: %w; see its log lines", err)
		case <-time.After(2 * time.Millisecond):
		}
		if !spawner {
			// The prepare starting one is done with it, and none runs.
			if again, ok := watch.TrySpawnLock(s.hook.StateDir); ok {
				again()
				if !watch.Running(s.hook.StateDir) {
					return errors.New("the watcher another prepare started is not running")
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("watcher not watching after %s: files labelled right after the start may keep the owner libvirt leaves", watcherReady)
		}
	}
	return nil
}

// watcherExe is the program run as `PROGRAM watch`: this one.
var watcherExe = os.Executable

// spawnWatcher starts `watch` in its own session; exited reports its end.
func spawnWatcher() (exited <-chan error, err error) {
	exe, err := watcherExe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "watch")
	// No descriptor of libvirtd's may stay open in the watcher: libvirtd
	// reads the hook's stdout and stderr until they close. nil means
	// /dev/null, and every other descriptor is close-on-exec.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done, nil
}

// journalKnows answers the watcher from a read-only view of the journal:
// the hook's own chowns (journal first, then chown) are not libvirt's.
func journalKnows(st *journal.Store) func([]inventory.File) []bool {
	return func(fs []inventory.File) []bool {
		out := make([]bool, len(fs))
		view, err := st.Load()
		if err != nil {
			return nil // unknown: release asks the journal again
		}
		for i, f := range fs {
			out[i] = view.Lookup((&journal.Entry{Dev: f.Dev, Ino: f.Ino}).Key()) != nil
		}
		return out
	}
}

// startWatcher makes sure a watcher keeps the inventories current.
func startWatcher(s *setup) {
	if !s.hook.LiveWatch || watch.Running(s.hook.StateDir) {
		return
	}
	if err := watcherSpawn(s); err != nil {
		s.log.WithError(err).Warn("watcher not started: files created after a domain started keep the owner libvirt leaves them")
	}
}

func cmdWatch(e *env, args []string) error {
	fs := newFlags(e, "watch", "watch\n\nKeeps the inventories of running domains current (cooperative mode); prepare starts it, it exits when no domain is left.")
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
	w := &watch.Watcher{
		StateDir: s.hook.StateDir, Log: s.log.WithField("op", "watch"),
		Known: journalKnows(r.Store), BootID: r.Store.BootID,
		Idle: 30 * time.Second, Flush: 50 * time.Millisecond,
	}
	return w.Run(stop)
}
