package apply

import (
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// ErrWritable is wrapped when an image whose header the plan read could
// still be rewritten by someone else than root and QEMU after the check.
var ErrWritable = errors.New("its header could be rewritten after the check")

// sealChange closes the window between the plan's reading of an image
// header and libvirt and QEMU following it. It runs right after the
// image was given to QEMU's user: from then on the former owner cannot
// open it for writing any more, so what is left to rule out is a writer
// that opened it before (checked with a read lease, which the kernel
// refuses while any descriptor is open for writing; block devices take no
// leases) and write access the mode or ACL grants others. Either fails the prepare, which is rolled
// back before libvirt labels anything.
type sealChange struct{ s *plan.Step }

func (c *sealChange) step() *plan.Step           { return c.s }
func (c *sealChange) undo() error                { return nil }
func (c *sealChange) logDone(logrus.FieldLogger) {}

func (c *sealChange) do() error {
	h := c.s.Handle
	if err := h.Refresh(); err != nil {
		return err
	}
	// Every image whose header the plan read, whatever its type: a
	// qcow2 on a block device is rewritten through the device as a file
	// is, and a device node's mode and ACL say who may.
	if t := h.Stat.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFBLK {
		return fmt.Errorf("%w: it is no regular file or block device (mode %o)", ErrWritable, h.Stat.Mode)
	}
	if err := writableByOthers(h, c.s.Target.UID); err != nil {
		return err
	}
	if err := noWriters(h); err != nil {
		return err
	}
	// Nobody can write it any more: what it says now is what libvirt and
	// QEMU will read. It must be what the plan checked, which an owner
	// could have rewritten, and closed, in between.
	if c.s.HeaderFormat != "" && plan.HeaderPrint(h, c.s.HeaderFormat) != c.s.HeaderPrint {
		return fmt.Errorf("%w: it changed after the hook read it; start the domain again, and find out who rewrites it", ErrWritable)
	}
	return nil
}

// writableByOthers refuses an image anyone but its owner (QEMU now) and
// root may write: they could forge the header later. Its group (QEMU's
// now) counts only when accounts besides QEMU's are in it, as users often
// are in kvm.
func writableByOthers(h *owner.Handle, qemuUID uint32) error {
	if h.Stat.Mode&0o002 != 0 {
		return fmt.Errorf("%w: it is writable by everyone (mode %o); run `chmod o-w %s`", ErrWritable, h.Stat.Mode&0o7777, h.Path)
	}
	if h.Stat.Mode&0o020 != 0 && groupOthers(h.Stat.Gid, qemuUID) {
		return fmt.Errorf("%w: it is group-writable (mode %o) and group %d has members besides QEMU's user; run `chmod g-w %s`", ErrWritable, h.Stat.Mode&0o7777, h.Stat.Gid, h.Path)
	}
	raw, err := h.RawACL()
	if err != nil {
		return err
	}
	if raw == nil {
		return nil // the mode says it all, and was checked above
	}
	a, err := acl.Parse(raw)
	if err != nil {
		return fmt.Errorf("the ACL of %s: %w", h.Path, err)
	}
	mask := acl.Read | acl.Write | acl.Exec
	for _, e := range a {
		if e.Tag == acl.Mask {
			mask = e.Perm
		}
	}
	for _, e := range a {
		if (e.Tag == acl.User && e.ID != qemuUID || e.Tag == acl.Group || e.Tag == acl.GroupObj && groupOthers(h.Stat.Gid, qemuUID)) && e.Perm&mask&acl.Write != 0 {
			return fmt.Errorf("%w: its ACL lets %s write it; run `setfacl -x %s %s`", ErrWritable, e, aclSubject(e), h.Path)
		}
	}
	return nil
}

func aclSubject(e acl.Entry) string {
	if e.Tag == acl.Group {
		return fmt.Sprintf("g:%d", e.ID)
	}
	return fmt.Sprintf("u:%d", e.ID)
}

// groupOthers is config.GroupOthers; tests replace it.
var groupOthers = config.GroupOthers

// noWriters fails when some process holds the file open for writing.
// Where the filesystem cannot tell (NFS, FUSE take no leases) only the
// owner change protects the header.
func noWriters(h *owner.Handle) error {
	writers, _, err := h.HasWriters()
	if err != nil {
		return err
	}
	if writers {
		return fmt.Errorf("%w: a process holds it open for writing (see `fuser -v %s`); stop it, then start the domain again", ErrWritable, h.Path)
	}
	return nil
}
