// Package plan turns a parsed domain into the list of steps prepare will
// carry out: every host file QEMU will open, found on the host (backing
// chains read from image headers, passthrough devices found in sysfs, pool
// volumes found in pool definitions), opened once as an owner.Handle,
// checked against the policy, with its current and target owner and the
// action to take. Files named by image headers, which QEMU can rewrite,
// get the stricter rules of header.go (place, type, owner, bounds).
//
// Building a plan changes nothing. The dry run prints a plan; prepare
// journals it and applies it through the very handles the plan holds, so
// what the dry run shows is what prepare does.
package plan
