package apply

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// recordIdentity completes e with what identifies its inode beyond device
// and number: a file handle (finds it after a rename), the generation and
// birth time (tell it from a later file reusing the number). A filesystem
// that offers none of them leaves them zero.
func recordIdentity(e *journal.Entry, h *owner.Handle) {
	id, err := h.Identity()
	if err != nil {
		e.Birth = owner.Birth(h)
		return
	}
	e.Birth, e.Generation = id.Birth, id.Generation
	e.HandleType, e.Handle, e.MountID = id.HandleType, id.Handle, id.MountID
}

func identityOf(e *journal.Entry) owner.Identity {
	return owner.Identity{Dev: e.Dev, Ino: e.Ino, Generation: e.Generation, Birth: e.Birth,
		HandleType: e.HandleType, Handle: e.Handle, MountID: e.MountID}
}

// located is where a recorded inode was found, or why it was not.
type located struct {
	h *owner.Handle
	// gone: the inode no longer exists (its file handle is stale, or the
	// path is gone and no handle could look elsewhere): nothing to give
	// back.
	gone bool
	// why says, when neither h nor gone, why the file cannot be proven to
	// be the recorded one: the record is kept and shown by status.
	why string
}

// locate opens the inode e recorded, wherever it is now: at its path when
// the inode there is provably the recorded one (the usual case, and the
// cheap one), else by its file handle (a rename does not lose it).
func locate(e *journal.Entry) located {
	withID := len(e.Handle) > 0 || e.Generation != 0 || e.Birth != 0
	h, perr := owner.Open(e.Path)
	var why string
	if perr == nil {
		cerr := identityOf(e).Check(h)
		if cerr == nil {
			return located{h: h}
		}
		hid := h.ID()
		_ = h.Close()
		why = fmt.Sprintf("its path now names another file (inode %d:%d, recorded %d:%d) and the recorded one cannot be found: kept, nothing changed", hid.Dev, hid.Ino, e.Dev, e.Ino)
	}
	if len(e.Handle) > 0 {
		h, err := owner.OpenByIdentity(identityOf(e), e.Path)
		switch {
		case err == nil && h.Stat.Nlink == 0:
			// Deleted, kept alive only by an open descriptor somewhere.
			_ = h.Close()
			return located{gone: true}
		case err == nil:
			return located{h: h}
		case errors.Is(err, unix.ESTALE):
			return located{gone: true}
		}
		// The handle could not be used (its mount is gone, as after a
		// reboot): the path decides.
	}
	switch {
	case !withID:
		// A record from before identities: as it always was.
		if perr == nil || errors.Is(perr, unix.ENOENT) {
			return located{gone: true}
		}
		return located{why: "cannot open: " + perr.Error()}
	case perr == nil:
		return located{why: why}
	case errors.Is(perr, unix.ENOENT):
		return located{why: "not found at its path or by its file handle: kept until it can be found (renamed onto another filesystem, or deleted)"}
	}
	return located{why: "cannot open: " + perr.Error()}
}
