package reclaim

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
)

// AddJournal marks every file the hook's journal records, by inode and by
// path (device numbers can change across boots): the journal gives those
// back itself (at release, or restore), held or pending.
func (u *InUse) AddJournal(st *journal.State) {
	for _, e := range st.All() {
		if e.ACL != nil {
			continue
		}
		var hs []string
		for _, h := range e.Holders {
			hs = append(hs, h.Domain)
		}
		why := "recorded in the hook's journal (pending: `restore --stale` gives it back)"
		if len(hs) > 0 {
			why = "recorded in the hook's journal, held by " + strings.Join(hs, ", ") + " (`status` tells whether that is stale)"
		}
		u.Add(e.Dev, e.Ino, why)
		u.AddPath(e.Path, why)
	}
}

// AddProcesses marks every inode a running QEMU has open: the open files
// of processes whose executable is qemu-system-* or qemu-kvm, or that run
// as uid, read from procRoot ("/proc"). A process that exits while read
// is skipped.
func (u *InUse) AddProcesses(procRoot string, uid uint32) error {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return fmt.Errorf("read %s: %w", procRoot, err)
	}
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(procRoot, en.Name())
		if !isQEMU(dir, uid) {
			continue
		}
		who := fmt.Sprintf("open by QEMU pid %d", pid)
		if g := guestName(dir); g != "" {
			who += " (domain " + g + ")"
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Stat(filepath.Join(dir, "fd", fd.Name()), &st) != nil {
				continue
			}
			if m := st.Mode & unix.S_IFMT; m == unix.S_IFREG || m == unix.S_IFBLK {
				u.Add(st.Dev, st.Ino, who)
			}
		}
	}
	return nil
}

func isQEMU(dir string, uid uint32) bool {
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		base := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
		if strings.HasPrefix(base, "qemu-system-") || base == "qemu-kvm" {
			return true
		}
	}
	var st unix.Stat_t
	return unix.Stat(dir, &st) == nil && st.Uid == uid
}

// guestName reads "-name guest=NAME,..." from a QEMU command line.
func guestName(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return ""
	}
	args := bytes.Split(b, []byte{0})
	for i := 0; i+1 < len(args); i++ {
		if string(args[i]) != "-name" {
			continue
		}
		for _, kv := range strings.Split(string(args[i+1]), ",") {
			if v, ok := strings.CutPrefix(kv, "guest="); ok {
				return v
			}
		}
		if !strings.Contains(string(args[i+1]), "=") {
			return string(args[i+1])
		}
	}
	return ""
}
