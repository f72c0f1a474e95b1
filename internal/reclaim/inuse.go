package reclaim

import (
	"fmt"
	"strings"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/qemuproc"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
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
		u.Add(owner.ID{Dev: e.Dev, Ino: e.Ino}, why)
		u.AddPath(e.Path, why)
	}
}

// AddProcesses marks every inode a QEMU of libvirt's has open: the
// processes named by the pid files in runDir ("/run/libvirt/qemu"),
// running as uid, read from procRoot ("/proc"). A process that exits
// while read is skipped.
func (u *InUse) AddProcesses(runDir, procRoot string, uid uint32) error {
	open, err := qemuproc.OpenFiles(runDir, procRoot, uid)
	if err != nil {
		return fmt.Errorf("QEMU processes of %s: %w", runDir, err)
	}
	for id, p := range open {
		who := fmt.Sprintf("open by QEMU pid %d", p.PID)
		if p.Domain != "" {
			who += " (domain " + p.Domain + ")"
		}
		u.Add(id, who)
	}
	return nil
}
