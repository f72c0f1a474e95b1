package apply

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// A change is one modification prepare makes to the host, made through the
// handle the plan holds. Its journal record is written before do runs, so
// a change never exists on disk without the record that undoes it.
type change interface {
	// do makes the change.
	do() error
	// undo takes back a change do made, for the rollback of a failed
	// prepare.
	undo() error
	// logDone writes the one log line of a change that was made.
	logDone(log logrus.FieldLogger)
	// step is the plan step the change belongs to.
	step() *plan.Step
}

// chownChange gives a file to QEMU's user.
type chownChange struct {
	s        *plan.Step
	from, to plan.Owner
}

func (c *chownChange) step() *plan.Step { return c.s }
func (c *chownChange) do() error        { return c.s.Handle.Chown(c.to.UID, c.to.GID) }
func (c *chownChange) undo() error      { return c.s.Handle.Chown(c.from.UID, c.from.GID) }
func (c *chownChange) logDone(log logrus.FieldLogger) {
	log.WithFields(logrus.Fields{"path": c.s.Path, "from": c.from.String(), "to": c.to.String()}).Info("chown")
}

// grantChange adds a user:<uid>:--x entry to a directory QEMU must search.
// The ACL may have changed since the plan read it; do records in entry
// what it really did (resave then tells Prepare to write the journal again).
type grantChange struct {
	s      *plan.Step
	entry  *journal.Entry
	active []acl.Change // grants in effect for other uids, before this prepare
	resave bool
}

func (c *grantChange) step() *plan.Step { return c.s }

func (c *grantChange) do() error {
	changed, err := addACL(c.s, c.entry, c.active)
	c.resave = changed
	return err
}

func (c *grantChange) undo() error { return undoACLStep(c.s, c.active) }

func (c *grantChange) logDone(log logrus.FieldLogger) {
	log = log.WithFields(logrus.Fields{"path": c.s.Path, "acl": fmt.Sprintf("user:%d:--x", c.s.ACL.UID)})
	log.Info("acl added")
	if len(c.s.ACL.Widened) > 0 && !c.s.ACL.Inherited {
		// POSIX ACLs have one mask for all named entries: giving it x
		// gives x to entries the admin had masked off, until release.
		log.WithField("widened", acl.ACL(c.s.ACL.Widened).String()).Warn("the ACL mask gained x, which also lets these entries search the directory until release")
	}
}

// markChange writes the owner mark on a file of a shared filesystem. A
// filesystem without trusted xattrs cannot hold a mark: that is logged
// and is not a failure (the mark only helps a migration's destination).
type markChange struct {
	s       *plan.Step
	next    mark
	old     []byte // the mark before, put back by undo; nil: there was none
	written bool
	log     logrus.FieldLogger
}

func (c *markChange) step() *plan.Step { return c.s }

func (c *markChange) do() error {
	if err := c.s.Handle.SetXattr(OwnerXattr, []byte(c.next.String())); err != nil {
		c.log.WithError(err).WithField("path", c.s.Path).Debug("no owner mark on this shared filesystem; a migration destination will not know the original owner")
		return nil
	}
	c.written = true
	return nil
}

func (c *markChange) undo() error {
	switch {
	case !c.written:
		return nil
	case c.old != nil:
		return c.s.Handle.SetXattr(OwnerXattr, c.old)
	default:
		return c.s.Handle.RemoveXattr(OwnerXattr)
	}
}

func (c *markChange) logDone(logrus.FieldLogger) {}

// needsChown reports whether a step's file must change owner.
func needsChown(s *plan.Step) bool {
	return s.Current.UID != s.Target.UID || s.Current.GID != s.Target.GID
}

// holds reports whether prepare records the step's file as held by the
// domain: files it gives to QEMU and files QEMU already has.
func holds(s *plan.Step) bool {
	return (s.Action == plan.Chown || s.Action == plan.Keep) && s.Handle != nil
}
