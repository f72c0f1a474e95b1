//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// The watcher of cooperative mode runs as the init system runs it
// (install/libvirt-dac-hook-watch.service): `libvirt-dac-hook watch`
// beside libvirt's daemon, in its namespace and with its config, from
// before the daemon starts until after it stops. This machine has no
// systemd, so each host starts and stops its own.

// startWatcher starts the host's hook's watcher and waits until it
// answers handshakes on its state directory's socket.
func (hs *host) startWatcher() error {
	if hs.watch != nil && !hs.watch.exited() {
		return nil
	}
	var err error
	if hs.watch, err = hs.startDaemon("watch", hookPath, "watch"); err != nil {
		return err
	}
	sock := filepath.Join(hs.stateDir, "watch.sock")
	var derr error
	if waitFor(10*time.Second, func() bool {
		if hs.watch.exited() {
			return true
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			derr = err
			return false
		}
		_ = c.Close()
		return true
	}) && !hs.watch.exited() {
		return nil
	}
	if derr == nil {
		derr = errors.New("it exited")
	}
	return fmt.Errorf("host %s: the watcher does not answer on %s: %w: %s", hs.name, sock, derr, tailFile(filepath.Join(hs.dir, "watch.stderr"), 10))
}

// stopWatcher stops the host's watcher as systemctl stop does (SIGTERM,
// then SIGKILL after a while).
func (hs *host) stopWatcher() error {
	err := hs.watch.stop()
	hs.watch = nil
	return err
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
			if err := f.h.host.stopWatcher(); err != nil {
				t.Fatalf("stop the watcher: %v", err)
			}
			if err := f.h.host.startWatcher(); err != nil {
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
