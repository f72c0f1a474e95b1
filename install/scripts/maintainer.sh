# libvirt-dac-hook package scripts (POSIX sh), one body for all four.
#
# `make packages` writes dist/stage/scripts/{preinstall,postinstall,preremove,
# postremove}, each "#!/bin/sh", "PHASE=<name>" and then this file, and nfpm
# packs the same four files into the .deb (preinst, postinst, prerm, postrm)
# and the .rpm (%pre, %post, %preun, %postun). Keeping one body means the
# two formats cannot drift apart; only the arguments differ:
#
#   dpkg: preinst  install | upgrade <old> | abort-upgrade
#         postinst configure <old> | abort-*
#         prerm    remove | upgrade <new> | deconfigure | failed-upgrade
#         postrm   remove | purge | upgrade <new> | abort-install | abort-upgrade | ...
#         upgrade order: old prerm upgrade, new preinst upgrade, unpack,
#         old postrm upgrade, new postinst configure.
#   rpm:  $1 is how many instances of the package remain after this step:
#         %pre/%post 1 = first install, 2+ = upgrade;
#         %preun/%postun 0 = final erase, 1+ = upgrade.
#         upgrade order: new %pre, new %post, old %preun, old %postun.
#
# What the scripts do:
#   - before our files land: if /etc/libvirt/hooks/qemu is someone else's
#     hook, move it to /etc/libvirt/hooks/qemu.d/ (libvirt >= 6.5 runs every
#     executable there after the main hook) and record its name in
#     /var/lib/libvirt-dac-hook/moved-hook;
#   - after: make /etc/libvirt/hooks/qemu a symlink to our binary, create the
#     state dir, enable libvirt-dac-hook-boot.service and enable and start
#     libvirt-dac-hook-watch.service on first install (restart the watcher
#     on upgrade, so it runs the new binary), and
#     say what the admin still has to do (we never edit qemu.conf and never
#     restart libvirtd);
#   - on final removal: disable the boot unit, stop and disable the
#     watcher, remove our hook and put the
#     moved one back;
#   - on purge (dpkg) or final erase (rpm): delete the state dir only if it
#     holds no record of a file the hook changed.
#
# LIBVIRT_DAC_HOOK_TEST_ROOT, if set, prefixes every path; only
# install/test-packages.sh sets it, to run these scripts in a scratch tree.

set -eu

R=${LIBVIRT_DAC_HOOK_TEST_ROOT:-}
LIBEXEC=/usr/libexec/libvirt-dac-hook/libvirt-dac-hook
HOOKS=$R/etc/libvirt/hooks
HOOK=$HOOKS/qemu
HOOKD=$HOOKS/qemu.d
STATE=$R/var/lib/libvirt-dac-hook
RECORD=$STATE/moved-hook
QEMUCONF=$R/etc/libvirt/qemu.conf
MARKER=libvirt-dac-hook-binary-marker-v1
MOVED_NAME=00-original-qemu-hook
UNIT=libvirt-dac-hook-boot.service
WATCHUNIT=libvirt-dac-hook-watch.service

say() { echo "libvirt-dac-hook: $*"; }

exists() { [ -e "$1" ] || [ -L "$1" ]; }

# is_ours PATH: PATH is our symlink, or a file (or symlink to one) that
# carries our marker, such as a binary copied there by `make install`.
is_ours() {
	if [ -L "$1" ] && [ "$(readlink "$1")" = "$LIBEXEC" ]; then
		return 0
	fi
	[ -f "$1" ] && grep -qF "$MARKER" "$1" 2>/dev/null
}

# has_records: the state dir holds something that may still be needed to
# give files back to their owners. Only the lock, the host id (marks on
# shared files), an empty journal and our
# own bookkeeping are known to be disposable; anything else (a journal with
# entries, a damaged journal moved aside, a file we do not know) counts.
has_records() {
	[ -d "$STATE" ] || return 1
	for f in "$STATE"/* "$STATE"/.[!.]*; do
		exists "$f" || continue
		case "${f##*/}" in
		lock | host-id | moved-hook | moved-hook.* | installed-files | watch.sock | watch.lock | watch.spawn | state.json.migrated | .journal-empty) ;;
		state.json) if grep -q '"path"' "$f"; then return 0; fi ;;
		state.db) journal_empty "$f" || return 0 ;;
		inventory) inventory_empty "$f" || return 0 ;;
		*) return 0 ;;
		esac
	done
	return 1
}

# journal_empty: the journal database holds no entry. The binary reads
# it while it is installed; once it is gone (purge after remove), the
# answer it gave at removal stands, if the journal did not change since.
journal_empty() {
	if [ -x "$LIBEXEC" ]; then
		out=$("$LIBEXEC" status --json --state-file "$1" 2>/dev/null) || return 1
		case "$out" in *'"path"'*) return 1 ;; esac
		return 0
	fi
	[ -f "$STATE/.journal-empty" ] && [ ! "$1" -nt "$STATE/.journal-empty" ]
}

# inventory_empty: no domain's record of directories is left (labelled.json
# and temporary files are the watcher's, meaningless without one).
inventory_empty() {
	for g in "$1"/*.rec "$1"/*.json; do
		exists "$g" || continue
		case "${g##*/}" in labelled.json) ;; *) return 1 ;; esac
	done
	return 0
}

# note_journal_empty: remember, while the binary can still tell, that the
# journal is empty, for a purge after the binary is gone.
note_journal_empty() {
	rm -f "$STATE/.journal-empty"
	if [ -f "$STATE/state.db" ] && journal_empty "$STATE/state.db"; then
		: >"$STATE/.journal-empty"
	fi
}

# move_foreign_hook: someone else's hook at $HOOK goes to $HOOKD under a
# name that is free; the first one moved is recorded so removal can put it
# back. A second one (an admin replaced our hook between install and
# upgrade) is moved too, so our hook can go back, but is left in qemu.d on
# removal, where libvirt keeps running it.
move_foreign_hook() {
	exists "$HOOK" || return 0
	is_ours "$HOOK" && return 0
	if [ -d "$HOOK" ] && [ ! -L "$HOOK" ]; then
		say "$HOOK is a directory, not a hook script; move it away and install again." >&2
		exit 1
	fi
	install -d -m 0700 "$STATE"
	if [ ! -d "$HOOKD" ]; then
		install -d -m 0755 "$HOOKD"
		: >"$RECORD.created-qemu.d"
	fi
	name=$MOVED_NAME
	n=1
	while exists "$HOOKD/$name"; do
		name=$MOVED_NAME-$n
		n=$((n + 1))
	done
	link=
	if [ -L "$HOOK" ]; then
		link=$(readlink "$HOOK")
	fi
	record=
	if ! exists "$RECORD"; then
		record=yes
		# Write-ahead: the record exists before the move, so a crash in
		# between leaves a name to look for rather than a lost hook.
		printf '%s\n' "$name" >"$RECORD.tmp"
		mv -f "$RECORD.tmp" "$RECORD"
		if [ -n "$link" ]; then
			printf '%s\n' "$link" >"$RECORD.link"
		fi
	fi
	case "$link" in
	"" | /*) mv -f "$HOOK" "$HOOKD/$name" ;;
	*)
		# A relative symlink would dangle one directory down; point the
		# new one at the same file and keep the original text for restore.
		ln -s "../$link" "$HOOKD/$name"
		rm -f "$HOOK"
		;;
	esac
	say "moved the existing hook $HOOK to $HOOKD/$name."
	say "libvirt (>= 6.5) runs it there, after libvirt-dac-hook, with the same arguments;"
	if [ -n "$record" ]; then
		say "it goes back to $HOOK when libvirt-dac-hook is removed."
	else
		say "an earlier hook is already recorded for restore; this one stays in qemu.d on removal."
	fi
	if [ ! -x "$HOOKD/$name" ]; then
		say "note: it is not executable, so libvirt did not and will not run it."
	fi
}

# install_hook: $HOOK becomes a symlink to our binary, replaced atomically
# so libvirtd never finds the hook missing half-way.
install_hook() {
	move_foreign_hook
	if [ -L "$HOOK" ] && [ "$(readlink "$HOOK")" = "$LIBEXEC" ]; then
		return 0
	fi
	install -d -m 0755 "$HOOKS"
	tmp=$HOOKS/.qemu.libvirt-dac-hook.tmp
	rm -f "$tmp"
	ln -s "$LIBEXEC" "$tmp"
	mv -fT "$tmp" "$HOOK"
}

# restore_hook: undo install_hook and move_foreign_hook.
restore_hook() {
	if exists "$HOOK" && is_ours "$HOOK"; then
		rm -f "$HOOK"
		say "removed $HOOK."
	fi
	# No restart is needed: libvirt (>= 6.5) checks at each call that the
	# hook is still there and executable, and skips it if not.
	if [ -f "$RECORD" ]; then
		put_back
	fi
}

# put_back: the hook recorded by move_foreign_hook returns to $HOOK.
put_back() {
	name=$(sed -n 1p "$RECORD")
	link=
	if [ -f "$RECORD.link" ]; then
		link=$(sed -n 1p "$RECORD.link")
	fi
	moved=$HOOKD/$name
	if [ -z "$name" ] || ! exists "$moved"; then
		say "the hook moved aside at install ($HOOKD/$name) is gone; nothing to put back."
	elif exists "$HOOK"; then
		say "$HOOK is someone else's hook now; leaving it, and the original hook at $moved."
	else
		if [ -n "$link" ]; then
			ln -s "$link" "$HOOK"
			rm -f "$moved"
		else
			mv -f "$moved" "$HOOK"
		fi
		say "put the original hook back at $HOOK."
	fi
	if [ -f "$RECORD.created-qemu.d" ]; then
		rmdir "$HOOKD" 2>/dev/null || true
	fi
	rm -f "$RECORD" "$RECORD.link" "$RECORD.created-qemu.d"
}

warn_records() {
	if has_records; then
		say "WARNING: $STATE holds records of files given to QEMU that are not yet given back."
		say "Domains still running will not have their files restored when they stop."
		say "Before removing, stop them or run 'libvirt-dac-hook restore'; 'libvirt-dac-hook status' lists them."
	fi
}

# purge_state: delete the state dir unless it holds records.
purge_state() {
	[ -d "$STATE" ] || return 0
	if has_records; then
		say "kept $STATE: it holds records of original file owners."
		say "Inspect it (libvirt-dac-hook status, with the package installed), then delete it by hand."
		return 0
	fi
	rm -f "$STATE/lock" "$STATE/state.json" "$STATE/state.db" "$STATE/state.json.migrated" "$STATE/watch.sock" "$STATE/watch.lock" "$STATE/watch.spawn" \
		"$STATE/host-id" "$STATE/.journal-empty" "$RECORD" "$RECORD.link" "$RECORD.created-qemu.d"
	rm -rf "$STATE/inventory"
	rmdir "$STATE" 2>/dev/null || say "kept $STATE: it is not empty."
}

advise() {
	say "installed $HOOK -> $LIBEXEC."
	say "still to do by hand:"
	if grep -Eq '^[[:space:]]*dynamic_ownership[[:space:]]*=[[:space:]]*0' "$QEMUCONF" 2>/dev/null; then
		say "  1. $QEMUCONF has dynamic_ownership = 0: strict mode, only the hook changes owners;"
		say "     hot-plugged disks then need 'libvirt-dac-hook grant DOMAIN PATH...' first."
		say "     Cooperative mode is recommended: set 'dynamic_ownership = 1' (remember_owner 1 or 0)."
	else
		say "  1. nothing in $QEMUCONF: dynamic_ownership = 1 (libvirt's default) is cooperative mode,"
		say "     the recommended one: libvirt labels files during the run (hot-plug, media change,"
		say "     snapshots, block jobs), the hook records the real owners and puts them back at release."
		say "     This package never edits qemu.conf."
	fi
	say "  2. restart libvirtd (or virtqemud): it reads qemu.conf, and notices a new hook, only when"
	say "     it starts. Running VMs survive the restart; they started without the hook, so it has no"
	say "     record of their files and leaves them alone when they stop."
	say "config: /etc/libvirt/libvirt-dac-hook.conf; check the setup with 'libvirt-dac-hook doctor'."
}

# systemd_running: this is a host booted with systemd, not a chroot, a
# container without it, or a package root being built.
systemd_running() { [ -z "$R" ] && [ -d /run/systemd/system ]; }

# systemctl_root ARGS...: systemctl acting on the unit files of our root
# only (--root works without a running systemd: in a chroot, a container,
# a test tree); nothing when there is no systemctl at all.
systemctl_root() {
	command -v systemctl >/dev/null 2>&1 || return 1
	systemctl --root="${R:-/}" "$@" >/dev/null 2>&1
}

# enable_unit: on first install only, so an admin's `systemctl disable`
# survives upgrades.
enable_unit() {
	if systemd_running; then
		systemctl daemon-reload >/dev/null 2>&1 || true
	fi
	if systemctl_root enable "$UNIT"; then
		say "enabled $UNIT: at boot, before libvirtd, it gives back owners a crash left recorded."
	else
		say "could not enable $UNIT (no systemctl here?); where systemd runs: systemctl enable $UNIT"
	fi
	if systemctl_root enable "$WATCHUNIT"; then
		say "enabled $WATCHUNIT: the watcher of cooperative mode, started with libvirtd and virtqemud."
	fi
	start_watcher
}

# start_watcher: (re)start the watcher where systemd runs, so it runs this
# binary; a domain running across the restart keeps its record, which the
# new watcher reads again. Without systemd nothing starts it: cooperative
# mode then needs `libvirt-dac-hook watch` run beside libvirtd.
start_watcher() {
	if systemd_running; then
		systemctl restart "$WATCHUNIT" >/dev/null 2>&1 || say "could not start $WATCHUNIT: see 'systemctl status $WATCHUNIT'"
	else
		say "no systemd running: start '/usr/sbin/libvirt-dac-hook watch' beside libvirtd for cooperative mode."
	fi
}

disable_unit() {
	systemctl_root disable "$UNIT" || true
	if systemd_running; then
		systemctl stop "$WATCHUNIT" >/dev/null 2>&1 || true
	fi
	systemctl_root disable "$WATCHUNIT" || true
}

reload_systemd() {
	if systemd_running; then
		systemctl daemon-reload >/dev/null 2>&1 || true
	fi
}

# The action, in dpkg's words, whichever tool runs us.
arg=${1:-}
case "$PHASE:$arg" in
preinstall:install | preinstall:1) action=install ;;
preinstall:upgrade | preinstall:[2-9] | preinstall:[1-9][0-9]*) action=upgrade ;;
postinstall:configure)
	if [ -n "${2:-}" ]; then action=upgrade; else action=install; fi
	;;
postinstall:1) action=install ;;
postinstall:[2-9] | postinstall:[1-9][0-9]*) action=upgrade ;;
preremove:remove | preremove:0) action=remove ;;
postremove:remove | postremove:0) action=remove ;;
postremove:purge) action=purge ;;
postremove:abort-install) action=abort-install ;;
*) action=none ;;
esac

case "$PHASE:$action" in
preinstall:install | preinstall:upgrade)
	move_foreign_hook
	;;
postinstall:install | postinstall:upgrade)
	install -d -m 0700 "$STATE"
	fresh=yes
	if [ -L "$HOOK" ] && [ "$(readlink "$HOOK")" = "$LIBEXEC" ]; then
		fresh=
	fi
	install_hook
	if [ "$action" = install ]; then
		enable_unit
	else
		reload_systemd
		start_watcher
	fi
	if [ -n "$fresh" ] || [ "$action" = install ]; then
		advise
	else
		say "upgraded; the hook runs the new binary from the next call, no restart needed."
	fi
	;;
preremove:remove)
	warn_records
	note_journal_empty
	disable_unit
	restore_hook
	;;
postremove:remove)
	reload_systemd
	# rpm has no purge: its final erase is the last chance to clean up.
	# dpkg keeps the state until purge, like it keeps conffiles.
	case "$arg" in
	0) purge_state ;;
	esac
	;;
postremove:purge)
	purge_state
	;;
postremove:abort-install)
	# Our preinst may have moved a hook before the install failed.
	restore_hook
	;;
esac

exit 0
