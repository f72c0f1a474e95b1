package cli

import (
	"os"
	"syscall"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// statOwner reads the owner out of a FileInfo (display only: nothing is
// changed on the strength of it).
func statOwner(fi os.FileInfo) (plan.Owner, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return plan.Owner{}, false
	}
	return plan.Owner{UID: st.Uid, GID: st.Gid}, true
}
