package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/config"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// ErrUnchecked is wrapped when libvirt is about to give QEMU an image
// that prepare did not check.
var ErrUnchecked = errors.New("prepare did not check it")

// CheckTransient refuses, in strict mode, a domain with <transient/>
// disks: libvirt creates their overlays after the hook ran, and with
// libvirt's labelling off nothing gives those to QEMU. Cooperative mode
// takes them (libvirt labels the overlay).
func CheckTransient(d *domain.Domain, q config.QEMU) error {
	if len(d.Transient) == 0 || q.Mode() != config.Strict {
		return nil
	}
	return fmt.Errorf("disk %s is <transient/>: libvirt creates its overlay after this hook ran, and in strict mode (dynamic_ownership = 0 in %s) nothing gives it to QEMU; "+
		"use cooperative mode (set dynamic_ownership = 1 and restart libvirtd) or remove <transient/> from the disk", strings.Join(d.Transient, ", "), q.Path)
}

// VerifyStart runs after libvirt's labelling and before QEMU starts
// (libvirt's "start begin"): the XML then holds the backing chains libvirt
// found itself. Every image in them must be an inode prepare checked and
// recorded for this domain; anything else (a file swapped in, or a header
// changed, after prepare) fails the start before QEMU can open it.
// Resources prepare would have left alone (relabel='no', QEMU as root,
// missing optional media, <transient/> disks libvirt replaces) are not
// checked.
func (r *Runner) VerifyStart(d *domain.Domain, runsAsRoot func(label string) bool) error {
	if !d.Relabel || runsAsRoot(d.Label) {
		return nil
	}
	st, err := r.Store.Load()
	if err != nil {
		return err
	}
	transient := map[string]bool{}
	for _, t := range d.Transient {
		transient["disk[target="+t+"]"] = true
	}
	for _, res := range d.Resources {
		if disk, _, _ := strings.Cut(res.From, "/"); transient[disk] {
			continue
		}
		if res.Path == "" || res.Skip != "" || !res.Kind.HeaderNamesFiles() || (res.Label != "" && runsAsRoot(res.Label)) {
			continue
		}
		h, err := owner.Open(res.Path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && res.Optional {
				continue
			}
			return fmt.Errorf("%s (%s): %w", res.Path, res.From, err)
		}
		id := h.ID()
		e := st.Lookup(journal.Key(id))
		same := e != nil && owner.SameBirth(e.Birth, h)
		h.Close()
		if !same || !holdsLive(e, d.Name, r.Store.BootID) {
			return fmt.Errorf("%s (%s): libvirt found it in the domain's disks, but %w (it was swapped in, or a header changed, after prepare): "+
				"refusing to start; check who can write the image and its directory, then start the domain again", res.Path, res.From, ErrUnchecked)
		}
	}
	return nil
}
