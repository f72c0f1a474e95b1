package apply

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

// OwnerXattr records, on a file that lives on a filesystem shared between
// hosts, its original owner and which hosts hold it now:
//
//	trusted.libvirt-dac-hook.owner = "UID:GID hosts=MACHINE/BOOT,MACHINE/BOOT"
//
// A live migration runs prepare on the destination while the source still
// holds the file, then release on the source; libvirt before 10.5 does not
// tell release it was a migration. With the mark, the destination records
// the true original (it finds the file owned by QEMU) and the source sees
// another host still holding the file and leaves it to that host, whose
// release gives it back. The trusted namespace is writable only by root, so
// QEMU cannot forge the mark. NFS has no trusted xattrs: there neither
// works, see the README.
const OwnerXattr = "trusted.libvirt-dac-hook.owner"

// maxMarkHosts bounds the host list read from a mark.
const maxMarkHosts = 64

type mark struct {
	Owner plan.Owner
	Hosts []string // "machine-id/boot-id" of each host holding the file
}

func (m mark) String() string {
	s := m.Owner.String()
	if len(m.Hosts) > 0 {
		s += " hosts=" + strings.Join(m.Hosts, ",")
	}
	return s
}

// parseMark reads a mark; ok is false for anything malformed.
func parseMark(b []byte) (m mark, ok bool) {
	s := string(b)
	ids, hosts, _ := strings.Cut(s, " hosts=")
	u, g, found := strings.Cut(ids, ":")
	if !found {
		return mark{}, false
	}
	var err error
	if m.Owner.UID, err = parseUint32(u); err != nil {
		return mark{}, false
	}
	if m.Owner.GID, err = parseUint32(g); err != nil {
		return mark{}, false
	}
	if hosts != "" {
		m.Hosts = strings.Split(hosts, ",")
		if len(m.Hosts) > maxMarkHosts || slices.Contains(m.Hosts, "") {
			return mark{}, false
		}
		for _, h := range m.Hosts {
			if strings.ContainsAny(h, " ,\x00\n") {
				return mark{}, false
			}
		}
	}
	return m, true
}

func parseUint32(s string) (uint32, error) {
	var v uint32
	if s == "" || len(s) > 10 {
		return 0, fmt.Errorf("bad id %q", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad id %q", s)
		}
		n := uint64(v)*10 + uint64(c-'0')
		if n > 1<<32-1 {
			return 0, fmt.Errorf("bad id %q", s)
		}
		v = uint32(n)
	}
	return v, nil
}

func readMark(h *owner.Handle) (mark, []byte, bool) {
	b, ok, err := h.GetXattr(OwnerXattr)
	if err != nil || !ok {
		return mark{}, nil, false
	}
	m, ok := parseMark(b)
	return m, b, ok
}

// hostKey is this host on this boot, as written in marks.
func (r *Runner) hostKey() string {
	if r.HostID == "" {
		r.HostID = r.Store.HostID()
	}
	return r.HostID + "/" + r.Store.BootID
}

// otherHosts are the mark's hosts that are not this machine (on any boot:
// this machine's earlier boots hold nothing any more).
func (r *Runner) otherHosts(m mark) []string {
	me, _, _ := strings.Cut(r.hostKey(), "/")
	var out []string
	for _, h := range m.Hosts {
		if id, _, _ := strings.Cut(h, "/"); id != me {
			out = append(out, h)
		}
	}
	return out
}

// otherHostHolds decides, for a file on a shared filesystem, whether its
// original owner must not be given back now: another host holds it (the
// destination of a live migration), or libvirt said the domain migrated
// (libvirt >= 10.5 passes the reason). Then the file keeps QEMU's owner,
// m is its mark without this host, and the last host to release gives it
// back. next is nil when the file carries no mark to update.
func (r *Runner) otherHostHolds(h *owner.Handle, migrated bool) (next *mark, others []string, keep bool) {
	m, _, ok := readMark(h)
	others = r.otherHosts(m)
	if !migrated && (!ok || len(others) == 0) {
		return nil, nil, false
	}
	if ok {
		m.Hosts = others
		next = &m
	}
	return next, others, true
}

// removeMark takes the mark off a file whose owner has been given back.
func removeMark(h *owner.Handle, log logrus.FieldLogger) {
	if err := h.RemoveXattr(OwnerXattr); err != nil {
		log.WithError(err).Warn("could not remove the owner mark on the file")
	}
}

// nextMark works out the mark a prepare writes on a file of a shared
// filesystem, and the original owner the entry must hold:
//   - no other host in the mark, or the file back with the mark's original
//     owner (those hosts gave it back, or left it to the admin): the mark is
//     stale; the original is what the journal says;
//   - another host holds it and gave it the owner this domain needs (a
//     migration source): the mark's original is the true one;
//   - another host holds it with another owner: a conflict, as between two
//     domains on one host.
func (r *Runner) nextMark(s *plan.Step, e *journal.Entry, domain, boot string) (next mark, raw []byte, changed bool, err error) {
	m, raw, ok := readMark(s.Handle)
	others := r.otherHosts(m)
	if ok && len(others) > 0 {
		switch *s.Current {
		case m.Owner:
			others = nil
		case *s.Target:
			if len(e.LiveHolders(boot)) <= 1 {
				e.UID, e.GID = m.Owner.UID, m.Owner.GID
			}
		default:
			return mark{}, nil, false, fmt.Errorf("%s (%s): %w: host(s) %s hold it as %s, domain %s needs %s (if no other host uses it any more, its mark is stale: `setfattr -x %s %s`)",
				s.Path, s.From, ErrConflict, strings.Join(others, ", "), s.Current, domain, s.Target, OwnerXattr, s.Path)
		}
	}
	next = mark{Owner: plan.Owner{UID: e.UID, GID: e.GID}, Hosts: append(others, r.hostKey())}
	return next, raw, !ok || next.String() != string(raw), nil
}
