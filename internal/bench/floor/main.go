// Command floor is the lower bound for the hook's work on a set of files:
// the system calls no implementation of prepare and release can avoid, and
// nothing else (no XML, no config, no image headers, no locking, no
// logging). run.sh times it next to the real hook on the same files; the
// ratio is how much the hook spends above the floor.
//
//	floor prepare LIST RECORD UID:GID
//	    for each path in LIST (one a line): open O_PATH|O_NOFOLLOW, fstat;
//	    then write every original owner to RECORD and fsync it (the
//	    write-ahead record prepare needs before it changes anything); then
//	    fchown each file through its descriptor to UID:GID.
//	floor release RECORD
//	    for each record: open O_PATH|O_NOFOLLOW, fstat, check the inode is
//	    the recorded one, fchown it back; then unlink RECORD.
//
// Like the hook it is two processes per start/stop cycle, because libvirtd
// runs the hook twice. The record is a flat text file written in one go.
package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var err error
	switch {
	case len(args) == 4 && args[0] == "prepare":
		err = prepare(args[1], args[2], args[3])
	case len(args) == 2 && args[0] == "release":
		err = release(args[1])
	default:
		fmt.Fprintln(os.Stderr, "usage: floor prepare LIST RECORD UID:GID | floor release RECORD")
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "floor: %s\n", err)
		return 1
	}
	return 0
}

func openPath(p string) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, st, fmt.Errorf("open %s: %w", p, err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd) // O_PATH: closing loses nothing
		return -1, st, fmt.Errorf("fstat %s: %w", p, err)
	}
	return fd, st, nil
}

func prepare(list, record, owner string) error {
	u, g, ok := strings.Cut(owner, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("owner %q: want UID:GID", owner)
	}
	data, err := os.ReadFile(list)
	if err != nil {
		return err
	}
	paths := strings.Fields(string(data))
	fds := make([]int, 0, len(paths))
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd) // O_PATH: closing loses nothing
		}
	}()
	var rec bytes.Buffer
	for _, p := range paths {
		fd, st, err := openPath(p)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
		fmt.Fprintf(&rec, "%d %d %d %d %s\n", st.Dev, st.Ino, st.Uid, st.Gid, p)
	}
	f, err := os.OpenFile(record, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(rec.Bytes()); err != nil {
		_ = f.Close() // the write error is the one to report
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync error is the one to report
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for i, fd := range fds {
		if err := unix.Fchownat(fd, "", int(uid), int(gid), unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("chown %s: %w", paths[i], err)
		}
	}
	return nil
}

func release(record string) error {
	data, err := os.ReadFile(record)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		f := strings.SplitN(line, " ", 5)
		if len(f) != 5 {
			return fmt.Errorf("record %q: want DEV INO UID GID PATH", line)
		}
		var n [4]uint64
		for i := range n {
			if n[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
				return fmt.Errorf("record %q: %w", line, err)
			}
		}
		dev, ino, uid, gid, p := n[0], n[1], int(n[2]), int(n[3]), f[4]
		fd, st, err := openPath(p)
		if err != nil {
			return err
		}
		if st.Dev != dev || st.Ino != ino {
			_ = unix.Close(fd)
			continue // replaced since prepare: not ours to give back
		}
		err = unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH)
		_ = unix.Close(fd)
		if err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	return os.Remove(record)
}
