package apply

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/acl"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cluster"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
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
	from, to owner.UIDGID
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

// recordChange writes a file's cluster record (shared filesystems) with
// this host's domain among the holders, before the file changes owner:
// every host then knows the original owner and that this host holds it.
type recordChange struct {
	s    *plan.Step
	sp   *cluster.Space
	next *cluster.Record
	old  *cluster.Record // the record before, put back by undo; nil: none
}

func (c *recordChange) step() *plan.Step { return c.s }

// incoming reports whether another host's domain of this name holds the
// file: this prepare is the destination of a live migration.
func (c *recordChange) incoming(domain, me string) bool {
	for _, h := range c.next.Others(me) {
		if h.Domain == domain {
			return true
		}
	}
	return false
}
func (c *recordChange) do() error { return c.sp.Put(c.next) }

func (c *recordChange) undo() error {
	if c.old == nil {
		return c.sp.Remove(c.next.Path)
	}
	return c.sp.Put(c.old)
}

func (c *recordChange) logDone(log logrus.FieldLogger) {
	log.WithFields(logrus.Fields{"path": c.s.Path, "record": c.sp.Dir, "original": fmt.Sprintf("%d:%d", c.next.UID, c.next.GID),
		"holders": len(c.next.Holders)}).Debug("cluster record written")
}

// needsChown reports whether a step's file must change owner.
func needsChown(s *plan.Step) bool {
	return s.Current.UID != s.Target.UID || s.Current.GID != s.Target.GID
}

// holds reports whether prepare records the step's file as held by the
// domain: files it gives to QEMU and files QEMU already has.
func holds(s *plan.Step) bool {
	return (s.Action == plan.Chown || s.Action == plan.Keep) && s.Handle != nil
}
