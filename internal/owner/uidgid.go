package owner

import "fmt"

// UIDGID is a file's owner: a user and a group id. Plans, the journal's
// callers, reclaim and libvirt's remembered labels all speak of owners in
// this one type, so an owner read in one place compares equal to the same
// owner read in another.
type UIDGID struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// String is "UID:GID", as chown(1) takes it and the logs write it.
func (o UIDGID) String() string { return fmt.Sprintf("%d:%d", o.UID, o.GID) }
