// Package apply carries out plans against the journal: Prepare records and
// then makes every change of a plan (all or nothing), Release and Restore
// give back what was recorded. It owns the ordering rules that make a hook
// killed at any instant recoverable:
//
//   - prepare: lock, record every original owner durably, then chown; on
//     failure undo the chowns and the records;
//   - release: lock, durably mark what will be given back, give it back,
//     then durably forget it.
//
// Both run entirely under the journal's lock.
package apply
