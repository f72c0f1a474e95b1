// Package e2e is the end-to-end suite: real libvirtd and QEMU processes
// started against the freshly built hook (or, with
// LIBVIRT_DAC_HOOK_E2E_INSTALLED=1, the installed one), checking the owner
// of every host file while each VM runs and after it stops.
//
// Every file of the suite is behind the e2e build tag, because the suite
// needs root and may change the machine: it installs libvirt and QEMU when
// they are missing, creates the users dachook-alice and dachook-bob (and
// removes them again), attaches loop devices and makes /dev/kvm root:kvm
// 0660. It never touches the machine's libvirt: every daemon it runs
// (virtlogd and libvirtd) runs in a private mount namespace of its own,
// with its own /etc/libvirt (a copy of the machine's config files with the
// suite's qemu.conf settings, a host_uuid of its own and the hook under
// test), /run/libvirt, /var/lib/libvirt, /var/log/libvirt,
// /var/cache/libvirt and hook state directory (host_test.go); several such
// hosts can run side by side. TestHostUntouched checks that the machine's
// /etc/libvirt, daemons and domains are as they were. A plain
// `go test ./...` compiles only this file and so never runs any of it.
// Run it as root:
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
// LIBVIRT_DAC_HOOK_E2E_LIBVIRT picks the libvirt: 9 (the default) is the
// machine's, Debian 12's libvirt 9.0 and QEMU 7.2; 11 is Debian 13's
// libvirt 11.3 and QEMU 10.0, installed once with mmdebstrap into
// /var/cache/libvirt-dac-hook-e2e/trixie-root (from the machine's Debian
// mirror, reused by later runs) and run with that directory as its
// namespace's root (libvirt_test.go). `make e2e` runs the suite against
// both (E2E_LIBVIRT="9 11").
//
// LIBVIRT_DAC_HOOK_E2E_KEEP=1 keeps the work directory (images, hook log,
// state) for inspection. As root and without CI=true, a host that cannot
// run the suite skips it; under CI=true that is a failure.
package e2e
