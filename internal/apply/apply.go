package apply

import (
	"errors"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cluster"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/journal"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// ErrConflict is wrapped when a domain needs a file with another owner than
// the one a running domain holds it with.
var ErrConflict = errors.New("held by another domain with a different owner")

// Runner carries out plans.
type Runner struct {
	Store *journal.Store
	Log   logrus.FieldLogger
	// DryRun logs what would be done and changes nothing.
	DryRun bool
	// Fault, when set, is called before every mutation of the host or the
	// journal with a running count; returning an error aborts there as if
	// the process had been killed (no rollback). Tests use it to inject
	// crashes at every point.
	Fault func(n int) error
	// SharedFS decides whether a file is on a filesystem shared between
	// hosts; nil means under a shared_filesystems entry or by its
	// filesystem type (owner.Handle.Shared). Tests override it.
	SharedFS func(*owner.Handle) bool
	// HostID names this host in cluster records; "" means the state
	// directory's host-id. Tests set two to play source and destination.
	HostID string
	// Cluster says where the records of files on shared filesystems are
	// (cluster_dir, qemu.conf's shared_filesystems).
	Cluster cluster.Dirs
	// Cooperative is set when libvirt's own DAC driver labels too
	// (qemu.conf dynamic_ownership = 1): release then also gives back
	// files libvirt "restored" to root:root, its fallback when it
	// remembers no owner.
	Cooperative bool
	// LiveDirs are the directories RecordLive adds to every domain's
	// record besides those of its files; nil means DefaultLiveDirs.
	// Tests point them at their own trees.
	LiveDirs []string
	// Op names the operation in log lines of Prepare: "prepare" when
	// empty; "grant" when an admin hands files to a running domain.
	Op string
	n  int
	// spaces are the record directories locked by this call.
	spaces map[string]*cluster.Space
	// shared caches isShared by handle: prepare asks for every file twice
	// (which record directories to lock, then each entry), and the answer
	// costs two statfs and, on FUSE, a read of the mount table.
	shared map[*owner.Handle]bool
}

func (r *Runner) op() string {
	if r.Op == "" {
		return "prepare"
	}
	return r.Op
}

func (r *Runner) isShared(h *owner.Handle) bool {
	if r.SharedFS != nil {
		return r.SharedFS(h)
	}
	if v, ok := r.shared[h]; ok {
		return v
	}
	v := r.sharedNow(h)
	if r.shared == nil {
		r.shared = map[*owner.Handle]bool{}
	}
	r.shared[h] = v
	return v
}

func (r *Runner) sharedNow(h *owner.Handle) bool {
	sf, err := h.Statfs()
	if err != nil || sf.Flags&unix.ST_RDONLY != 0 {
		// Nothing on a read-only mount changes owner, so there is nothing
		// for hosts to agree on (and no record could be written).
		return false
	}
	return r.Cluster.InShared(h.Path) || h.Shared()
}

// errKilled marks an injected crash: nothing after it may run.
type errKilled struct{ err error }

func (e errKilled) Error() string { return e.err.Error() }
func (e errKilled) Unwrap() error { return e.err }

func (r *Runner) step() error {
	r.n++
	if r.Fault != nil {
		if err := r.Fault(r.n); err != nil {
			return errKilled{err}
		}
	}
	return nil
}

// Killed reports whether err is an injected crash.
func Killed(err error) bool {
	var k errKilled
	return errors.As(err, &k)
}
