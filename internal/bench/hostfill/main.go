// Command hostfill makes a host that already holds N files: it creates N
// empty files in DIR and records each in the journal of STATE_DIR as held
// by one of N/10 running domains, through the journal API in a few
// transactions (not by running N hooks), chowned to UID:GID as prepare
// would have left them.
//
//	hostfill STATE_DIR DIR N UID:GID
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: hostfill STATE_DIR DIR N UID:GID")
		return 2
	}
	n, err := strconv.Atoi(args[2])
	u, g, ok := strings.Cut(args[3], ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if err != nil || n < 0 || !ok || err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "hostfill: N must be a number, and UID:GID numeric")
		return 2
	}
	if err := fill(args[0], args[1], n, uint32(uid), uint32(gid)); err != nil {
		fmt.Fprintf(os.Stderr, "hostfill: %s\n", err)
		return 1
	}
	return 0
}

func fill(stateDir, dir string, n int, uid, gid uint32) error {
	s, err := journal.Open(stateDir, time.Minute)
	if err != nil {
		return err
	}
	if err := s.Lock(); err != nil {
		return err
	}
	defer s.Unlock()
	const chunk = 10000
	for start := 0; start < n; start += chunk {
		st, err := s.Load()
		if err != nil {
			return err
		}
		for i := start; i < min(n, start+chunk); i++ {
			p := filepath.Join(dir, fmt.Sprintf("held-%05d.img", i))
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return err
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			sys := fi.Sys().(*syscall.Stat_t)
			if err := os.Chown(p, int(uid), int(gid)); err != nil {
				return err
			}
			st.Add(&journal.Entry{
				Path: p, Dev: sys.Dev, Ino: sys.Ino, UID: sys.Uid, GID: sys.Gid, TargetUID: uid, TargetGID: gid,
				Holders: []journal.Holder{{Domain: fmt.Sprintf("held-%04d", i/10), BootID: s.BootID, Kind: "disk"}},
				Created: s.BootID,
			})
		}
		if err := s.Save(st); err != nil {
			return err
		}
	}
	return nil
}
