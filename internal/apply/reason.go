package apply

// Reason is why libvirt released a domain: the shutoff reason libvirt
// >= 10.5 passes as the 4th argument of `release end` (libvirt's
// docs/hooks.rst; the strings are virDomainShutoffReason's in
// src/conf/domain_conf.c). Older libvirt passes "-" (ReasonNone): the
// release then works out what it can from the files themselves.
type Reason string

// The reasons libvirt passes, and ReasonNone for libvirt before 10.5.
const (
	ReasonNone         Reason = "-"
	ReasonUnknown      Reason = "unknown"
	ReasonShutdown     Reason = "shutdown"      // the guest shut down
	ReasonDestroyed    Reason = "destroyed"     // virsh destroy
	ReasonCrashed      Reason = "crashed"       // QEMU died (kill -9, a crash)
	ReasonMigrated     Reason = "migrated"      // this host's copy migrated away: another host's QEMU runs it now
	ReasonSaved        Reason = "saved"         // virsh save / managedsave
	ReasonFailed       Reason = "failed"        // the start failed, or an incoming migration did
	ReasonFromSnapshot Reason = "from snapshot" // reverted to a snapshot taken while shut off
	ReasonDaemon       Reason = "daemon"        // the daemon killed it while reconnecting
)

// Migrated reports whether libvirt said the domain now runs on another
// host.
func (r Reason) Migrated() bool { return r == ReasonMigrated }
