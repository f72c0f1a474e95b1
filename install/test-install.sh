#!/usr/bin/env bash
# test-install.sh: `make install` and `make uninstall` into a scratch
# DESTDIR, checked file by file: what install puts where, that it refuses a
# foreign hook, that uninstall removes exactly what install added (keeping
# an edited config and a state directory with records), and that the boot
# unit passes `systemd-analyze verify` where systemd-analyze exists.
# Touches nothing outside the scratch tree and never runs systemctl.
#
# Usage (from anywhere in the repo): bash install/test-install.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
T=$(mktemp -d /tmp/test-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
D=$T/root
passed=0
fail() {
	echo "test-install: FAIL: $*" >&2
	echo "test-install: $passed passed, 1 failed"
	exit 1
}
check() {
	local desc=$1
	shift
	if "$@"; then passed=$((passed + 1)); else fail "$desc"; fi
}
exists() { [ -e "$1" ] || [ -L "$1" ]; }
absent() { ! exists "$1"; }
mode_of() { stat -c %a "$1"; }
# Every file and symlink under the tree, relative, sorted.
files_under() { (cd "$1" && find . ! -type d | sed 's|^\./|/|' | sort); }

MK=(make --no-print-directory DESTDIR="$D")
SBIN=/usr/sbin/libvirt-dac-hook
HOOK=/etc/libvirt/hooks/qemu
CONF=/etc/libvirt/libvirt-dac-hook.conf
MAN=/usr/share/man/man8/libvirt-dac-hook.8
UNIT=/usr/lib/systemd/system/libvirt-dac-hook-boot.service
WATCHUNIT=/usr/lib/systemd/system/libvirt-dac-hook-watch.service
STATE=/var/lib/libvirt-dac-hook

echo "== make install DESTDIR"
"${MK[@]}" install >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "make install failed"; }
check "binary 0755" test "$(mode_of "$D$SBIN")" = 755
check "binary runs" bash -c "'$D$SBIN' version >/dev/null"
check "hook is a symlink to $SBIN" test "$(readlink "$D$HOOK")" = "$SBIN"
check "config installed 0644" test "$(mode_of "$D$CONF")" = 644
check "config is the shipped one" cmp -s "$D$CONF" install/libvirt-dac-hook.conf
check "man page installed" grep -q '^\.TH LIBVIRT-DAC-HOOK 8' "$D$MAN"
check "settings man page installed" grep -q '^\.TH LIBVIRT-DAC-HOOK.CONF 5' "$D/usr/share/man/man5/libvirt-dac-hook.conf.5"
check "state dir 0700" test "$(mode_of "$D$STATE")" = 700
check "unit installed" test -f "$D$UNIT"
check "unit runs the installed binary" grep -qx "ExecStart=$SBIN boot --lock-timeout 10s" "$D$UNIT"
check "unit is conditioned on the journal" grep -qx "ConditionPathExists=|$STATE/state.db" "$D$UNIT"
check "unit has no placeholder left" bash -c "! grep -q @ '$D$UNIT'"
check "unit ordered before libvirtd and virtqemud" grep -q '^Before=libvirtd.service virtqemud.service' "$D$UNIT"
check "watcher unit installed 0644" test "$(mode_of "$D$WATCHUNIT")" = 644
check "watcher unit runs the installed binary" grep -qx "ExecStart=$SBIN watch" "$D$WATCHUNIT"
check "watcher unit tells systemd when it is ready" grep -qx "Type=notify" "$D$WATCHUNIT"
check "watcher unit restarted on failure" grep -qx "Restart=on-failure" "$D$WATCHUNIT"
check "watcher unit ready before libvirtd and virtqemud" grep -qx "Before=libvirtd.service virtqemud.service" "$D$WATCHUNIT"
check "watcher unit started with libvirtd and virtqemud" grep -qx "WantedBy=libvirtd.service virtqemud.service" "$D$WATCHUNIT"
check "watcher unit has no placeholder left" bash -c "! grep -q @ '$D$WATCHUNIT'"
check "no systemctl for a DESTDIR" grep -q "enable the boot unit on the target" "$T/install.log"
check "install says how to run the watcher without systemd" grep -q "libvirt-dac-hook watch' beside libvirtd" "$T/install.log"
check "install message recommends cooperative mode" grep -q "dynamic_ownership = 1" "$T/install.log"
check "install message says to restart libvirtd" grep -q "restart libvirtd" "$T/install.log"
if command -v systemd-analyze >/dev/null; then
	# verify checks that ExecStart is executable: point it at the tree's copy.
	mkdir -p "$T/verify"
	sed "s|^ExecStart=$SBIN|ExecStart=$D$SBIN|" "$D$UNIT" >"$T/verify/libvirt-dac-hook-boot.service"
	sed "s|^ExecStart=$SBIN|ExecStart=$D$SBIN|" "$D$WATCHUNIT" >"$T/verify/libvirt-dac-hook-watch.service"
	systemd-analyze verify --man=no "$T/verify/libvirt-dac-hook-boot.service" "$T/verify/libvirt-dac-hook-watch.service" >"$T/verify.log" 2>&1 || { cat "$T/verify.log"; fail "systemd-analyze verify"; }
	check "systemd-analyze verify is silent" test ! -s "$T/verify.log"
else
	echo "   note: no systemd-analyze here; unit not verified"
fi

echo "== make install again (upgrade) keeps an edited config"
echo "# local change" >>"$D$CONF"
cp "$D$CONF" "$T/conf-edited"
"${MK[@]}" install >"$T/install2.log" 2>&1 || { cat "$T/install2.log"; fail "second make install failed"; }
check "edited config kept" cmp -s "$D$CONF" "$T/conf-edited"
check "hook still ours" test "$(readlink "$D$HOOK")" = "$SBIN"

echo "== make uninstall: removes what install added, keeps the edited config"
"${MK[@]}" uninstall >"$T/uninstall.log" 2>&1 || { cat "$T/uninstall.log"; fail "make uninstall failed"; }
check "says it kept the edited config" grep -q "kept $D$CONF: it was changed" "$T/uninstall.log"
check "only the edited config is left" test "$(files_under "$D")" = "$CONF"
check "state dir without records removed" absent "$D$STATE"

echo "== install, uninstall: nothing left"
rm -f "$D$CONF"
"${MK[@]}" install >/dev/null 2>&1 || fail "make install failed"
"${MK[@]}" uninstall >"$T/uninstall2.log" 2>&1 || { cat "$T/uninstall2.log"; fail "make uninstall failed"; }
check "no file left" test -z "$(files_under "$D")"

echo "== a config there before install is not ours to remove"
mkdir -p "$D/etc/libvirt"
cp install/libvirt-dac-hook.conf "$D$CONF"
"${MK[@]}" install >/dev/null 2>&1 || fail "make install failed"
"${MK[@]}" uninstall >/dev/null 2>&1 || fail "make uninstall failed"
check "pre-existing config kept" test "$(files_under "$D")" = "$CONF"
rm -f "$D$CONF"

echo "== state with records is kept"
"${MK[@]}" install >/dev/null 2>&1 || fail "make install failed"
printf '{"version":1,"entries":[{"path":"/img/a.raw"}]}\n' >"$D$STATE/state.json"
"${MK[@]}" uninstall >"$T/uninstall3.log" 2>&1 || fail "make uninstall failed"
check "state with records kept" test -f "$D$STATE/state.json"
check "said why" grep -q "holds records" "$T/uninstall3.log"
rm -rf "${D:?}$STATE"

echo "== state with a running domain's record is kept"
"${MK[@]}" install >/dev/null 2>&1 || fail "make install failed"
mkdir -p "$D$STATE/inventory"
printf '{}\n' >"$D$STATE/inventory/c4c3640727d6a64321296ae0f710fcf6.rec"
"${MK[@]}" uninstall >"$T/uninstall4.log" 2>&1 || fail "make uninstall failed"
check "domain record kept" test -f "$D$STATE/inventory/c4c3640727d6a64321296ae0f710fcf6.rec"
check "said why" grep -q "holds records" "$T/uninstall4.log"
rm -rf "${D:?}$STATE"

echo "== a foreign hook is refused"
mkdir -p "$D/etc/libvirt/hooks"
printf '#!/bin/sh\necho theirs\n' >"$D$HOOK"
chmod 0755 "$D$HOOK"
cp "$D$HOOK" "$T/foreign"
if "${MK[@]}" install >"$T/refuse.log" 2>&1; then fail "make install replaced a foreign hook"; fi
check "refusal names the hook" grep -q "refusing to overwrite $D$HOOK" "$T/refuse.log"
check "foreign hook untouched" cmp -s "$D$HOOK" "$T/foreign"
check "nothing else installed" test "$(files_under "$D")" = "$HOOK"

echo "== a copy of the binary at the hook (an older make install) is ours"
cp bin/libvirt-dac-hook "$D$HOOK"
"${MK[@]}" install >/dev/null 2>&1 || fail "make install over our own copy failed"
check "copy replaced by the symlink" test "$(readlink "$D$HOOK")" = "$SBIN"
"${MK[@]}" uninstall >/dev/null 2>&1 || fail "make uninstall failed"
check "no file left" test -z "$(files_under "$D")"

echo "== uninstall without installed-files (an older install) removes the fixed set"
"${MK[@]}" install >/dev/null 2>&1 || fail "make install failed"
rm -f "$D$STATE/installed-files"
"${MK[@]}" uninstall >"$T/uninstall4.log" 2>&1 || { cat "$T/uninstall4.log"; fail "make uninstall failed"; }
check "said the list was missing" grep -q "installed-files is missing" "$T/uninstall4.log"
check "only the config is left" test "$(files_under "$D")" = "$CONF"
rm -f "$D$CONF"

echo "test-install: $passed passed, 0 failed"
