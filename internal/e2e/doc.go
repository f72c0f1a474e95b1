// Package e2e is the end-to-end suite: real libvirtd and QEMU processes
// started against the freshly built hook (or, with
// LIBVIRT_DAC_HOOK_E2E_INSTALLED=1, the installed one), checking the owner
// of every host file while each VM runs and after it stops.
//
// Every file of the suite is behind the e2e build tag, because the suite
// changes the host: it may install libvirt and QEMU, rewrites
// /etc/libvirt/qemu.conf, installs the hook, restarts libvirtd and creates
// users. It puts all of that back afterwards (also after a killed run, at
// the next run's start). A plain `go test ./...` compiles only this file
// and so never touches the host. Run it as root:
//
//	sudo make e2e
//	sudo go test -tags e2e -count=1 -timeout 40m -v ./internal/e2e/
//
// Test names: the lifecycle, parent-directory, resource and side-by-side
// scenarios run in strict mode (dynamic_ownership = 0, the hook alone
// chowns). TestLive runs the live operations (hot-plug, media change,
// snapshots, block jobs, save/restore, transient disks) and the lifecycle
// scenarios once per mode: strict, cooperative with remember_owner = 1 and
// cooperative with remember_owner = 0, e.g.
//
//	sudo go test -tags e2e -count=1 -v -run 'TestLive/coop-remember/AttachDetach' ./internal/e2e/
//
// LIBVIRT_DAC_HOOK_E2E_KEEP=1 keeps the work directory (images, hook log,
// state) for inspection. As root and without CI=true, a host that cannot
// run the suite skips it; under CI=true that is a failure.
package e2e
