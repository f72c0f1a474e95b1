package cli_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/watch"
)

// TestWatcherSpawn: the prepare that starts the watcher waits for it, says
// so at once when it exits without watching, and starts none when one
// runs already.
func TestWatcherSpawn(t *testing.T) {
	t.Run("watcher exits at once", func(t *testing.T) {
		state := t.TempDir()
		exe := filepath.Join(t.TempDir(), "fails")
		if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		err := cli.SpawnWatcher(state, exe)
		if err == nil || !strings.Contains(err.Error(), "exited before watching") {
			t.Errorf("SpawnWatcher = %v, want the watcher's exit reported", err)
		}
	})
	t.Run("a watcher runs already", func(t *testing.T) {
		state := t.TempDir()
		log := logrus.New()
		log.SetOutput(io.Discard)
		w := &watch.Watcher{StateDir: state, Log: log, Idle: time.Minute, Flush: 5 * time.Millisecond}
		stop, done := make(chan struct{}), make(chan error, 1)
		go func() { done <- w.Run(stop) }()
		defer func() {
			close(stop)
			if err := <-done; err != nil {
				t.Errorf("watcher: %v", err)
			}
		}()
		for deadline := time.Now().Add(5 * time.Second); !watch.Running(state); time.Sleep(2 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("watcher did not start")
			}
		}
		// A program that would leave a mark if it were started.
		mark := filepath.Join(t.TempDir(), "started")
		exe := filepath.Join(t.TempDir(), "marks")
		if err := os.WriteFile(exe, []byte("#!/bin/sh\ntouch "+mark+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := cli.SpawnWatcher(state, exe); err != nil {
			t.Errorf("SpawnWatcher with a watcher running = %v", err)
		}
		if _, err := os.Stat(mark); err == nil {
			t.Error("a second watcher was started while one runs")
		}
	})
}
