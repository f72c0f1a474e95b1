// Package apply carries out plans against the journal: Prepare records and
// then makes every change of a plan (all or nothing), Release and Restore
// give back what was recorded, and PlanRelease shows what a release would
// decide without acting.
//
// Each kind of change prepare makes is a value with do, undo and its log
// line (change.go: chown, search-ACL grant, owner mark on a shared
// filesystem), so Prepare reads as: lock, refresh what the plan read
// without the lock, record, carry out, roll back on failure. Release is the
// mirror: durably let go of the holders, decide for each entry (decide,
// shared with the dry run), carry the decisions out, durably forget.
//
// The ordering rules make a hook killed at any instant recoverable:
//
//   - prepare: record every original owner durably, then change the host;
//     on failure undo the changes and the records;
//   - release: durably mark what will be given back, give it back, then
//     durably forget it.
//
// Both run entirely under the journal's lock.
//
// Recovery gives back what no release will (recover.go): Recover for
// `restore` and the boot unit (the journal's entries, the inventories of
// domains no longer running, this host's cluster holds), Boot, which
// opens nothing when nothing is stale, and ForgetHost.
//
// Cooperative mode's part of a run (live.go): RecordLive writes, after
// Prepare, the inventory record the watcher follows; ReleaseLive gives
// back what libvirt labelled during the run; JournalKnows tells the
// watcher which changes were the hook's own.
package apply
