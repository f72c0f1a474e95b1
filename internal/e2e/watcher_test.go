//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The watcher of cooperative mode runs as the init system runs it
// (install/libvirt-dac-hook-watch.service): `libvirt-dac-hook watch`
// beside libvirt's daemon, in its environment, from before the first
// domain starts until after the last one stops. This machine has no
// systemd, so the harness starts and stops it.
var watcher struct {
	cmd  *exec.Cmd
	done chan error
}

// startWatcher starts the installed hook's watcher for the harness's
// state directory and waits until it answers handshakes.
func (h *harness) startWatcher() error {
	if watcher.cmd != nil {
		return nil
	}
	log, err := os.OpenFile(filepath.Join(h.workDir, "watcher.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("watcher log: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(hookPath, "watch")
	cmd.Stdout, cmd.Stderr = log, log
	// Its own session, as a unit's process: a signal to the test's
	// process group does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the watcher: %w", err)
	}
	watcher.cmd, watcher.done = cmd, make(chan error, 1)
	go func() { watcher.done <- cmd.Wait() }()
	sock := filepath.Join(h.stateDir, "watch.sock")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case err := <-watcher.done:
			watcher.cmd = nil
			return fmt.Errorf("watcher exited before listening: %w (see %s)", err, log.Name())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("watcher not listening on %s after 10s", sock)
		}
	}
}

// stopWatcher stops the watcher the harness started, as systemctl stop
// does (SIGTERM, then SIGKILL after a while).
func (h *harness) stopWatcher() error {
	if watcher.cmd == nil {
		return nil
	}
	defer func() { watcher.cmd = nil }()
	if err := watcher.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop the watcher: %w", err)
	}
	select {
	case err := <-watcher.done:
		if err != nil {
			return fmt.Errorf("watcher: %w", err)
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = watcher.cmd.Process.Kill()
		return fmt.Errorf("watcher still running 15s after SIGTERM: killed (%w)", <-watcher.done)
	}
}

// TestWatcherRestart: the watcher stopped and started again (as
// `systemctl restart libvirt-dac-hook-watch` does) while a domain runs.
// A disk attached before the restart and one attached after both get
// their owners back when the domain stops, in both cooperative modes.
func TestWatcherRestart(t *testing.T) {
	if e2e == nil {
		t.Skip("e2e harness not set up")
	}
	for _, m := range []ownershipMode{coopRemember, coopNoRemember} {
		t.Run(m.name, func(t *testing.T) {
			e2e.useMode(t, m)
			f := newFixture(t)
			q := f.h.qemu.owner()
			name := domainPrefix + "watch-restart"
			boot := f.hotplugDomain(name)
			attach := func(tr *tracked, target string) {
				t.Helper()
				f.mustVirsh(name, "attach-disk", name, tr.path, target, "--targetbus", "scsi", "--subdriver", "raw", "--live")
			}
			early := f.rawImage("early.raw", f.h.alice.owner())
			attach(early, "sda")
			f.want("attached before the restart", q, name, early, boot)
			if err := f.h.stopWatcher(); err != nil {
				t.Fatalf("stop the watcher: %v", err)
			}
			if err := f.h.startWatcher(); err != nil {
				t.Fatalf("start the watcher again: %v", err)
			}
			late := f.rawImage("late.raw", f.h.bob.owner())
			attach(late, "sdb")
			f.want("attached after the restart", q, name, early, late, boot)
			f.destroy(name)
			f.check("after destroy", false, name)
		})
	}
}
