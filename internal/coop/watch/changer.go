package watch

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/qemuproc"
)

// DaemonPidFiles are the pid files of the daemons whose changes are
// libvirt's labels: the monolithic libvirtd and the modular virtqemud.
var DaemonPidFiles = []string{"/run/libvirtd.pid", "/run/virtqemud.pid"}

// libvirtThreads are the thread names (comm, at most 15 bytes) a fork of
// libvirt's daemon carries from the thread that forked it: libvirt
// forks to label inside QEMU's mount namespace. An exec'd child (the
// hook, qemu-img, a shell) has its program's name instead.
var libvirtThreads = []string{"rpc-", "prio-rpc-", "qemu-event", "vm-", "libvirtd", "virtqemud", "daemon-init"}

// Changer is who made a change, as far as the event showed.
type Changer struct {
	// Libvirt is set when the process was libvirt's daemon, or a fork of
	// it under one of libvirt's thread names, alive when the event was
	// read.
	Libvirt bool
	// Who says what was seen, for logs and status.
	Who string
}

// witness judges, as soon as a batch is read, who made each event's
// change, and closes the pidfds (or keeps one in w.procs).
func (w *Watcher) witness(evs []event) {
	daemons := w.daemons()
	for i := range evs {
		ev := &evs[i]
		if ev.pidfd < 0 {
			ev.who = Changer{Who: "a process gone before its event was read"}
			continue
		}
		if c, ok := w.procs.lookup(ev.pid, daemons); ok {
			ev.who = c
			closePidfd(ev.pidfd)
			ev.pidfd = -1
			continue
		}
		pid := pidOf(ev.pidfd)
		c, read := changer(ev.pidfd, pid, daemons)
		ev.who = c
		if read && !c.Libvirt && pid == int(ev.pid) && w.procs.keep(pid, ev.pidfd, c, daemons) {
			ev.pidfd = -1 // the cache holds it now
			continue
		}
		closePidfd(ev.pidfd)
		ev.pidfd = -1
	}
}

// maxProcs bounds the processes procCache remembers.
const maxProcs = 64

// procCache remembers, across batches, the processes judged not to be
// libvirt's, with a pidfd of each: a run of changes by one process (the
// hook's own chowns, a copy) costs one look at /proc, not two reads per
// event. An entry answers only while its process still runs (so its pid
// is still its own, and the event's live process with that pid is it)
// and libvirt's daemons are the ones it was judged against. Only "not
// libvirt's" is remembered: a fork of libvirt's daemon that goes on to
// exec another program keeps its pid, and must not keep libvirt's
// credit; the other way round, a process that was not libvirt's does not
// become its fork. It belongs to the reader goroutine.
type procCache map[int32]*knownProc

type knownProc struct {
	pidfd   int
	who     Changer
	daemons []int
}

func (pc procCache) lookup(pid int32, daemons []int) (Changer, bool) {
	k := pc[pid]
	if pid <= 0 || k == nil {
		return Changer{}, false
	}
	if !slices.Equal(k.daemons, daemons) || exited(k.pidfd) {
		closePidfd(k.pidfd)
		delete(pc, pid)
		return Changer{}, false
	}
	return k.who, true
}

// keep remembers the judgement c of the process pidfd names; false when
// the cache could not take it (the caller still owns pidfd).
func (pc procCache) keep(pid, pidfd int, c Changer, daemons []int) bool {
	if pc == nil || pid <= 0 {
		return false
	}
	if len(pc) >= maxProcs {
		pc.clear()
	}
	pc[int32(pid)] = &knownProc{pidfd: pidfd, who: c, daemons: slices.Clone(daemons)}
	return true
}

// clear forgets every process and closes their pidfds.
func (pc procCache) clear() {
	for pid, k := range pc {
		closePidfd(k.pidfd)
		delete(pc, pid)
	}
}

// exited reports whether the process a pidfd names has exited (the pidfd
// polls readable then); an error counts as exited.
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err != nil || n != 0
}

// changer judges the process of an event from its pidfd (FAN_REPORT_PIDFD):
// the kernel makes one only while the process lives, so the evidence is
// read from /proc and then proven still the same process by the pidfd
// naming the same pid (a pid is not reused while a pidfd holds it and
// the process is not reaped).
// read is false when the process could not be looked at.
func changer(pidfd, pid int, daemons []int) (c Changer, read bool) {
	if pid <= 0 {
		return Changer{Who: "a process gone before its event was read"}, false
	}
	name, ppid, ok := procStatus(pid)
	if !ok || pidOf(pidfd) != pid {
		return Changer{Who: fmt.Sprintf("pid %d, gone while it was read", pid)}, false
	}
	who := fmt.Sprintf("pid %d (%s, parent %d)", pid, name, ppid)
	for _, d := range daemons {
		if pid == d {
			return Changer{Libvirt: true, Who: "libvirt's daemon, " + who}, true
		}
		if ppid == d && isLibvirtThread(name) {
			return Changer{Libvirt: true, Who: "a fork of libvirt's daemon, " + who}, true
		}
	}
	return Changer{Who: who + ", not libvirt's daemon or a fork of it"}, true
}

func isLibvirtThread(name string) bool {
	for _, p := range libvirtThreads {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// daemons reads the pids of libvirt's daemons from their pid files.
func (w *Watcher) daemons() []int {
	files := w.DaemonPidFiles
	if files == nil {
		files = DaemonPidFiles
	}
	var out []int
	for _, f := range files {
		if pid, ok := qemuproc.ReadPid(f); ok {
			out = append(out, pid)
		}
	}
	return out
}

// pidOf reads the pid a pidfd names (its fdinfo's Pid line); 0 or less
// once the process is reaped.
func pidOf(pidfd int) int {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		return 0
	}
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(l, []byte("Pid:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return 0
			}
			return n
		}
	}
	return 0
}

// procStatus reads a process's name and parent from /proc/PID/status.
func procStatus(pid int) (name string, ppid int, ok bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", 0, false
	}
	defer func() { _ = f.Close() }() // read only
	sc := bufio.NewScanner(f)
	got := 0
	for sc.Scan() && got < 2 {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			name, got = v, got+1
		case "PPid":
			ppid, _ = strconv.Atoi(v)
			got++
		}
	}
	return name, ppid, got == 2
}

// closePidfd closes an event's pidfd, if any.
func closePidfd(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd)
	}
}
