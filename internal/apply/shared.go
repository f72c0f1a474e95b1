package apply

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// OwnerXattr is the owner mark earlier versions wrote on files of shared
// filesystems:
//
//	trusted.libvirt-dac-hook.owner = "UID:GID hosts=HOSTID/BOOT,HOSTID/BOOT"
//
// The cluster records (package cluster) replace it, because NFS cannot
// store it. It is still read, only where no cluster record exists yet (a
// host upgraded while another ran the domain): a prepare takes its
// original when another host holds the file, a release keeps the file
// while the mark names another host, and the last give-back removes it.
// Nothing writes it any more.
const OwnerXattr = "trusted.libvirt-dac-hook.owner"

// maxMarkHosts bounds the host list read from a mark.
const maxMarkHosts = 64

type mark struct {
	Owner owner.UIDGID
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

// readMark reads an earlier version's mark on the file h holds.
func readMark(h *owner.Handle) (mark, bool) {
	b, ok, err := h.GetXattr(OwnerXattr)
	if err != nil || !ok {
		return mark{}, false
	}
	return parseMark(b)
}

// removeMark takes an earlier version's mark off a file whose owner has
// been given back.
func removeMark(h *owner.Handle, log logrus.FieldLogger) {
	if err := h.RemoveXattr(OwnerXattr); err != nil {
		log.WithError(err).Warn("could not remove the owner mark on the file")
	}
}
