#!/usr/bin/env bash
# test-packages.sh: build the .deb and .rpm and check them for real on this
# machine (Debian, root): install, reinstall, upgrade, remove and purge the
# .deb around a pre-existing hook; check the .rpm's metadata, file list and
# scripts against the .deb, run the rpm scriptlets with rpm's arguments in
# a scratch tree, and install, upgrade and erase the .rpm for real with
# `rpm --root` in a scratch root with its own database (busybox and
# coreutils' install copied in, so the scriptlets run). Everything it
# changes under /etc/libvirt/hooks, /etc/libvirt/libvirt-dac-hook.conf,
# /var/lib/libvirt-dac-hook and the boot unit's enablement links is put
# back as it was when it exits, pass or fail.
#
# Usage (from anywhere in the repo, as root; CI runs it after `make test`):
#   bash install/test-packages.sh [MAKE-ARGS...]
# MAKE-ARGS go to every `make packages`, e.g. README=/tmp/r.md while the
# repo has no README. PKG_VERSION and DIST must not be among them.
# TEST_PACKAGES_SKIP_E2E=1 skips the real-libvirt tests (./internal/e2e/) against
# the installed hook, for trying the packaging alone; TEST_PACKAGES_E2E_RUN
# is a `go test -run` pattern to run only some of them.
#
# The machine's /etc/libvirt is never touched and never read for a
# verdict: the checks run three times, each in a private mount namespace
# whose /etc/libvirt is a copy of the machine's with its own qemu.conf:
# none, `dynamic_ownership = 0` and `dynamic_ownership = 1` (what the
# postinst says depends on it). The real-libvirt tests run in the last.
# The machine's /etc/libvirt is checksummed before and after, and must not
# change. TEST_PACKAGES_QEMU_CONF=absent|0|1 runs one of them alone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# dpkg needs ldconfig and start-stop-daemon on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

# etc_sums: every entry under /etc/libvirt with its type, mode, owner and
# content checksum, sorted.
etc_sums() {
	find /etc/libvirt -printf '%p %y %m %u:%g %l\n' | sort
	find /etc/libvirt -type f -print0 | sort -z | xargs -0r sha256sum
}

# --- the three runs, each with its own /etc/libvirt ------------------------------
if [ -z "${TEST_PACKAGES_IN_NS:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "test-packages: FAIL: must run as root (it installs packages)" >&2; exit 1; }
	command -v unshare >/dev/null || { echo "test-packages: FAIL: unshare (util-linux) not found" >&2; exit 1; }
	variants=${TEST_PACKAGES_QEMU_CONF:-absent 0 1}
	# The lock of every host-changing run (see below) is taken before the
	# machine's /etc/libvirt is read, and held through the three runs.
	exec 9>>/var/tmp/dachook-e2e.lock
	if ! flock -n 9; then
		echo "== waiting for another e2e or package run to release /var/tmp/dachook-e2e.lock (up to 20 min)"
		flock -w 1200 9 || { echo "test-packages: FAIL: another run still holds /var/tmp/dachook-e2e.lock" >&2; exit 1; }
	fi
	before=$(etc_sums)
	rc=0
	last=${variants##* }
	for v in $variants; do
		case "$v" in absent | 0 | 1) ;; *) echo "test-packages: FAIL: TEST_PACKAGES_QEMU_CONF=$v: want absent, 0 or 1" >&2; exit 1 ;; esac
		E=$(mktemp -d /var/tmp/test-packages-etc.XXXXXX)
		cp -a /etc/libvirt/. "$E/"
		# A qemu.conf of the variant's own: the machine's, without its
		# dynamic_ownership lines, under the variant's (or none at all).
		rm -f "$E/qemu.conf"
		if [ "$v" != absent ]; then
			{ echo "dynamic_ownership = $v"; sed -E '/^[[:space:]]*dynamic_ownership[[:space:]]*=/d' /etc/libvirt/qemu.conf 2>/dev/null || true; } >"$E/qemu.conf"
			chmod 0600 "$E/qemu.conf"
		fi
		skip_e2e=${TEST_PACKAGES_SKIP_E2E:-}
		[ "$v" = "$last" ] || skip_e2e=1
		echo "==== qemu.conf: $([ "$v" = absent ] && echo none || echo "dynamic_ownership = $v") (own /etc/libvirt in a private mount namespace)"
		TEST_PACKAGES_IN_NS=1 TEST_PACKAGES_QEMU_CONF=$v TEST_PACKAGES_SKIP_E2E=$skip_e2e \
			unshare --mount --propagation private -- \
			bash -c 'mount --bind "$1" /etc/libvirt && shift && exec bash "$@"' _ "$E" "$ROOT/install/test-packages.sh" "$@" || rc=$?
		rm -rf "$E"
		[ "$rc" = 0 ] || break
	done
	if [ "$(etc_sums)" != "$before" ]; then
		echo "test-packages: FAIL: the machine's /etc/libvirt changed:" >&2
		diff <(echo "$before") <(etc_sums) >&2 || true
		exit 1
	fi
	[ "$rc" = 0 ] && echo "test-packages: every run passed (qemu.conf: $variants); /etc/libvirt unchanged"
	exit "$rc"
fi
QEMUCONF_VARIANT=$TEST_PACKAGES_QEMU_CONF

PKG=libvirt-dac-hook
HOOKS=/etc/libvirt/hooks
HOOK=$HOOKS/qemu
HOOKD=$HOOKS/qemu.d
STATE=/var/lib/libvirt-dac-hook
CONF=/etc/libvirt/libvirt-dac-hook.conf
LIBEXEC=/usr/libexec/libvirt-dac-hook/libvirt-dac-hook
SBIN=/usr/sbin/libvirt-dac-hook
MAN=/usr/share/man/man8/libvirt-dac-hook.8.gz
DOC=/usr/share/doc/libvirt-dac-hook
MARKER=libvirt-dac-hook-binary-marker-v1
MOVED=00-original-qemu-hook
UNITFILE=/usr/lib/systemd/system/libvirt-dac-hook-boot.service
UNITLINK=/etc/systemd/system/multi-user.target.wants/libvirt-dac-hook-boot.service
WATCHFILE=/usr/lib/systemd/system/libvirt-dac-hook-watch.service
WATCHLINK=/etc/systemd/system/libvirtd.service.wants/libvirt-dac-hook-watch.service

passed=0
current=""

fail() {
	echo "test-packages: FAIL: ${current:+$current: }$*" >&2
	echo "test-packages: $passed passed, 1 failed"
	exit 1
}

# check DESCRIPTION COMMAND...: one counted assertion.
check() {
	local desc=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
	else
		fail "$desc"
	fi
}

step() {
	current=$1
	echo "== $1"
}

# run LOG COMMAND...: run quietly; show the output when it fails.
run() {
	local log=$1
	shift
	if ! "$@" >"$log" 2>&1 </dev/null; then
		cat "$log" >&2
		fail "$* exited non-zero"
	fi
}

mode_of() { stat -c %a "$1"; }
owner_of() { stat -c %U:%G "$1"; }
exists() { [ -e "$1" ] || [ -L "$1" ]; }
absent() { ! exists "$1"; }
has_marker() { grep -qF "$MARKER" "$1"; }
is_our_link() { [ -L "$1" ] && [ "$(readlink "$1")" = "$LIBEXEC" ]; }
pkg_status() { dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null || echo not-installed; }
no_marker_under() { ! grep -rlqF "$MARKER" "$1" 2>/dev/null; }
count_entries() { if [ -d "$1" ]; then find "$1" -mindepth 1 -maxdepth 1 | wc -l; else echo 0; fi; }

# --- preconditions ------------------------------------------------------------
[ "$(id -u)" = 0 ] || fail "must run as root (it installs packages)"
command -v dpkg >/dev/null || fail "dpkg not found: this test runs on Debian"
case "$(pkg_status)" in
not-installed | "") ;;
*) fail "$PKG is already on this machine ($(pkg_status)); remove it first, this test would replace it" ;;
esac
dpkg-query -W -f='${db:Status-Status}' libvirt-daemon 2>/dev/null | grep -qx installed ||
	fail "libvirt-daemon is not installed; the .deb depends on it (apt-get install libvirt-daemon-system)"
if ! command -v rpm >/dev/null; then
	echo "== installing rpm (Debian's package) to inspect the .rpm"
	apt-get install -y rpm >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y rpm >/dev/null; } ||
		fail "could not install rpm"
fi

# --- one host-changing run at a time ---------------------------------------------
# The e2e suites take this lock before they touch libvirtd and the hook;
# so does this script, which replaces the hook, except while its own e2e
# step runs (that step takes the lock itself).
# The outer run took it on descriptor 9, which each run here inherits.
E2E_LOCK=/var/tmp/dachook-e2e.lock
flock -n 9 || fail "descriptor 9 does not hold $E2E_LOCK (run install/test-packages.sh itself, not with TEST_PACKAGES_IN_NS)"

# --- save what we touch, restore it on exit -----------------------------------
BK=$(mktemp -d /tmp/test-packages.XXXXXX)
mkdir -p "$BK/saved"
exists "$HOOK" && cp -a "$HOOK" "$BK/saved/qemu"
[ -d "$HOOKD" ] && cp -a "$HOOKD" "$BK/saved/qemu.d"
[ -d "$STATE" ] && cp -a "$STATE" "$BK/saved/state"
exists "$CONF" && cp -a "$CONF" "$BK/saved/conf"

restore() {
	local rc=$?
	set +e
	if [ "$(pkg_status)" != not-installed ]; then
		dpkg -P "$PKG" >"$BK/restore-purge.log" 2>&1 || dpkg -P --force-all "$PKG" >>"$BK/restore-purge.log" 2>&1
	fi
	# The hook is replaced by rename, never deleted first, so libvirtd
	# never finds it missing if it was there before.
	rm -f "$HOOKS/.qemu.libvirt-dac-hook.tmp" "$HOOKS/.qemu.test-packages"
	if exists "$BK/saved/qemu"; then
		cp -a "$BK/saved/qemu" "$HOOKS/.qemu.test-packages" && mv -fT "$HOOKS/.qemu.test-packages" "$HOOK"
	else
		rm -f "$HOOK"
	fi
	rm -rf "$HOOKD"
	[ -d "$BK/saved/qemu.d" ] && cp -a "$BK/saved/qemu.d" "$HOOKD"
	rm -rf "$STATE"
	[ -d "$BK/saved/state" ] && cp -a "$BK/saved/state" "$STATE"
	rm -f "$CONF"
	exists "$BK/saved/conf" && cp -a "$BK/saved/conf" "$CONF"
	# The postinst enables the boot unit (links under /etc/systemd/system).
	rm -f /etc/systemd/system/*.wants/libvirt-dac-hook-boot.service
	rm -rf "$BK"
	exit "$rc"
}
trap restore EXIT
trap 'exit 130' INT TERM

# --- build, twice: the same commit must give the same bytes -------------------
step "build"
VER=$(sh install/pkgversion.sh)
DEB=dist/${PKG}_${VER}_amd64.deb
RPMF=dist/$PKG-$VER.x86_64.rpm
run "$BK/make1.log" make packages "$@"
check "$DEB built" test -f "$DEB"
check "$RPMF built" test -f "$RPMF"
sum1=$(sha256sum "$DEB" "$RPMF" | awk '{print $1}')
run "$BK/make2.log" make packages "$@"
sum2=$(sha256sum "$DEB" "$RPMF" | awk '{print $1}')
check "two builds of the same tree give identical packages" test "$sum1" = "$sum2"
echo "   $DEB, $RPMF (version $VER)"

# --- the .deb, statically -----------------------------------------------------
step "deb contents"
check "deb Package" test "$(dpkg-deb -f "$DEB" Package)" = "$PKG"
check "deb Version = $VER" test "$(dpkg-deb -f "$DEB" Version)" = "$VER"
check "deb Architecture" test "$(dpkg-deb -f "$DEB" Architecture)" = amd64
check "deb Depends on libvirt-daemon-system | libvirt-daemon, >= 6.5" test "$(dpkg-deb -f "$DEB" Depends)" = "libvirt-daemon-system (>= 6.5) | libvirt-daemon (>= 6.5)"
# "mode path" per entry, paths normalised to /a/b (no ./, no trailing /).
dpkg-deb -c "$DEB" | awk '{p=$6; sub(/^\./, "", p); sub(/\/$/, "", p); print $1, p}' | sort >"$BK/deb.list"
# (nfpm writes symlinks with mode 0; neither dpkg nor rpm uses it.)
for want in \
	"-rwxr-xr-x $LIBEXEC" \
	"l--------- $SBIN" \
	"-rw-r--r-- $CONF" \
	"drwx------ $STATE" \
	"-rw-r--r-- $MAN" \
	"-rw-r--r-- /usr/share/man/man5/libvirt-dac-hook.conf.5.gz" \
	"-rw-r--r-- $UNITFILE" \
	"-rw-r--r-- $WATCHFILE" \
	"-rw-r--r-- $DOC/README.md" \
	"-rw-r--r-- $DOC/LICENSE"; do
	check "deb has '$want'" grep -qxF -- "$want" "$BK/deb.list"
done
check "deb does not ship $HOOK (the scripts create it)" bash -c "! grep -q ' /etc/libvirt/hooks' '$BK/deb.list'"
dpkg-deb -c "$DEB" >"$BK/deb.raw"
check "deb symlink $SBIN -> $LIBEXEC" grep -qF "./usr/sbin/libvirt-dac-hook -> $LIBEXEC" "$BK/deb.raw"
dpkg-deb -e "$DEB" "$BK/debctl"
check "deb conffiles is exactly $CONF" test "$(cat "$BK/debctl/conffiles")" = "$CONF"
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ".$LIBEXEC" >"$BK/bin-from-deb"
check "deb binary carries the marker" has_marker "$BK/bin-from-deb"
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ".$MAN" | gzip -dc >"$BK/man"
check "deb man page is roff" grep -q '^\.TH LIBVIRT-DAC-HOOK 8' "$BK/man"
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ".$UNITFILE" >"$BK/unit"
check "deb unit runs /usr/sbin/libvirt-dac-hook boot" grep -qx "ExecStart=$SBIN boot --lock-timeout 10s" "$BK/unit"
check "deb unit has no placeholder" bash -c "! grep -q @ '$BK/unit'"
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ".$WATCHFILE" >"$BK/watchunit"
check "deb watcher unit runs /usr/sbin/libvirt-dac-hook watch" grep -qx "ExecStart=$SBIN watch" "$BK/watchunit"
check "deb watcher unit starts before libvirtd and virtqemud" grep -qx "Before=libvirtd.service virtqemud.service" "$BK/watchunit"
if command -v systemd-analyze >/dev/null; then
	# verify wants ExecStart executable: point it at the package's binary.
	mkdir -p "$BK/verify"
	sed "s|^ExecStart=$SBIN|ExecStart=$BK/bin-from-deb|" "$BK/unit" >"$BK/verify/libvirt-dac-hook-boot.service"
	chmod 0755 "$BK/bin-from-deb"
	check "systemd-analyze verify passes the unit" bash -c "systemd-analyze verify --man=no '$BK/verify/libvirt-dac-hook-boot.service' >'$BK/verify.log' 2>&1 && ! [ -s '$BK/verify.log' ] || { cat '$BK/verify.log' >&2; false; }"
fi

# --- the .rpm, against the .deb -------------------------------------------------
step "rpm metadata and files"
check "rpm name version arch license" test "$(rpm -qp --qf '%{NAME} %{VERSION} %{ARCH} %{LICENSE}' "$RPMF" 2>/dev/null)" = "$PKG $VER x86_64 Apache-2.0"
check "rpm requires libvirt-daemon-driver-qemu or libvirt-daemon, >= 6.5" bash -c "rpm -qp --requires '$RPMF' 2>/dev/null | grep -qxF '(libvirt-daemon-driver-qemu >= 6.5 or libvirt-daemon >= 6.5)'"
check "rpm config files: $CONF, noreplace" test "$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPMF" 2>/dev/null | grep -v '^ ')" = "cn $CONF"
rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPMF" 2>/dev/null | sort >"$BK/rpm.list"
# Every rpm entry is in the deb with the same mode; the deb has in addition
# only directories it shares with other packages (/usr, /etc/libvirt, ...).
comm -23 "$BK/rpm.list" "$BK/deb.list" >"$BK/rpm-only"
comm -13 "$BK/rpm.list" "$BK/deb.list" >"$BK/deb-only"
[ -s "$BK/rpm-only" ] && { echo "in the rpm, not the deb:"; cat "$BK/rpm-only"; } >&2
check "every rpm file is in the deb with the same mode" test ! -s "$BK/rpm-only"
check "the deb adds only shared directories" bash -c "! grep -v '^d' '$BK/deb-only'"
check "rpm owns our directories" bash -c "grep -qxF 'drwxr-xr-x /usr/libexec/libvirt-dac-hook' '$BK/rpm.list' && grep -qxF 'drwxr-xr-x $DOC' '$BK/rpm.list'"

step "rpm scripts = deb scripts"
mkdir -p "$BK/rpmscripts"
for pair in PREIN:preinst POSTIN:postinst PREUN:prerm POSTUN:postrm; do
	tag=${pair%%:*}
	deb=${pair#*:}
	rpm -qp --qf "%{$tag}" "$RPMF" 2>/dev/null >"$BK/rpmscripts/$deb"
	check "rpm %{${tag}PROG} is /bin/sh" test "$(rpm -qp --qf "%{${tag}PROG}" "$RPMF" 2>/dev/null)" = /bin/sh
	# rpm may drop the final newline; compare the text.
	check "rpm $tag is the deb's $deb" test "$(cat "$BK/rpmscripts/$deb")" = "$(cat "$BK/debctl/$deb")"
	check "$deb recognises our hook by the marker" grep -qF "$MARKER" "$BK/debctl/$deb"
	# shellcheck disable=SC2016 # the script's own text, not expanded here
	check "$deb moves a foreign hook to qemu.d" grep -qF 'mv -f "$HOOK" "$HOOKD/$name"' "$BK/debctl/$deb"
done

# --- rpm's $1 semantics, in a scratch tree ----------------------------------------
# The rpm's own scriptlets run with rpm's arguments and
# LIBVIRT_DAC_HOOK_TEST_ROOT prefixing every path. The packaged files are
# not there, which the scripts do not need: our hook is a symlink whose
# text names the binary.
step "rpm scriptlets: install, upgrade, erase"
S=$BK/rpmscripts
T=$BK/root1
scriptlet() { LIBVIRT_DAC_HOOK_TEST_ROOT=$T sh "$S/$1" "$2" >>"$BK/scriptlets.log" 2>&1 || fail "%$1 $2 failed: $(cat "$BK/scriptlets.log")"; }
mkdir -p "$T/etc/libvirt/hooks"
printf '#!/bin/sh\necho foreign "$@"\n' >"$T$HOOK"
chmod 0750 "$T$HOOK"
cp -a "$T$HOOK" "$BK/foreign"
scriptlet preinst 1
check "%pre 1 moved the foreign hook to qemu.d" cmp -s "$T$HOOKD/$MOVED" "$BK/foreign"
check "%pre 1 recorded it" test "$(cat "$T$STATE/moved-hook")" = "$MOVED"
scriptlet postinst 1
check "%post 1 made $HOOK our symlink" is_our_link "$T$HOOK"
check "%post 1 state dir 0700" test "$(mode_of "$T$STATE")" = 700
for _ in 1 2; do # upgrade: new %pre 2, new %post 2, old %preun 1, old %postun 1
	scriptlet preinst 2
	scriptlet postinst 2
	scriptlet prerm 1
	scriptlet postrm 1
done
check "upgrades keep our hook" is_our_link "$T$HOOK"
check "upgrades keep the foreign hook in qemu.d, once" test "$(count_entries "$T$HOOKD")" = 1
check "upgrades keep the record" test "$(cat "$T$STATE/moved-hook")" = "$MOVED"
check "upgrades keep the moved hook's bytes and mode" bash -c "cmp -s '$T$HOOKD/$MOVED' '$BK/foreign' && [ \$(stat -c %a '$T$HOOKD/$MOVED') = 750 ]"
scriptlet prerm 0
scriptlet postrm 0
check "%preun 0 put the foreign hook back" cmp -s "$T$HOOK" "$BK/foreign"
check "%preun 0 kept its mode" test "$(mode_of "$T$HOOK")" = 750
check "%preun 0 removed the qemu.d it created" absent "$T$HOOKD"
check "%postun 0 removed the state dir without records" absent "$T$STATE"

step "rpm scriptlets: relative symlink hook, records kept"
T=$BK/root2
mkdir -p "$T/etc/libvirt/hooks/qemu.d"
printf '#!/bin/sh\n' >"$T$HOOKS/real-hook.sh"
chmod 0755 "$T$HOOKS/real-hook.sh"
ln -s real-hook.sh "$T$HOOK"
: >"$T$HOOKD/$MOVED" # a name collision the move must step around
scriptlet preinst 1
moved=$(cat "$T$STATE/moved-hook")
check "collision: moved under a new name" test "$moved" = "$MOVED-1"
check "relative symlink still reaches its target from qemu.d" test -x "$T$HOOKD/$moved"
scriptlet postinst 1
printf '{"version":1,"entries":[{"path":"/var/lib/libvirt/images/a.qcow2"}]}\n' >"$T$STATE/state.json"
scriptlet prerm 0
scriptlet postrm 0
check "erase restored the symlink text" test "$(readlink "$T$HOOK")" = real-hook.sh
check "erase left the colliding file alone" test -f "$T$HOOKD/$MOVED"
check "erase kept a state dir holding records" test -f "$T$STATE/state.json"
check "erase said why it kept it" grep -q "kept .*records" "$BK/scriptlets.log"

step "deb scriptlets: abort-install puts the hook back"
T=$BK/root3
mkdir -p "$T/etc/libvirt/hooks"
cp -a "$BK/foreign" "$T$HOOK"
scriptlet preinst install
check "preinst install moved it" absent "$T$HOOK"
scriptlet postrm abort-install
check "postrm abort-install put it back" cmp -s "$T$HOOK" "$BK/foreign"

step "scriptlets: a hook copied by make install is ours, not moved"
T=$BK/root4
mkdir -p "$T/etc/libvirt/hooks"
cp "$BK/bin-from-deb" "$T$HOOK"
scriptlet preinst install
check "preinst left our copy in place" cmp -s "$T$HOOK" "$BK/bin-from-deb"
check "preinst recorded nothing" absent "$T$STATE/moved-hook"
check "preinst created no qemu.d" absent "$T$HOOKD"
scriptlet postinst configure
check "postinst replaced the copy with our symlink" is_our_link "$T$HOOK"

# --- the .deb, for real ---------------------------------------------------------
step "dpkg -i with a pre-existing hook"
hookd_before=$(count_entries "$HOOKD")
hookd_existed=no
[ -d "$HOOKD" ] && hookd_existed=yes
mkdir -p "$HOOKS"
cat >"$BK/test-hook" <<EOF
#!/bin/sh
# pre-existing hook planted by install/test-packages.sh
cat >/dev/null
echo "\$*" >>"$BK/test-hook.log"
EOF
chmod 0750 "$BK/test-hook"
cp -a "$BK/test-hook" "$HOOKS/.qemu.test-packages"
mv -fT "$HOOKS/.qemu.test-packages" "$HOOK"
run "$BK/install.log" dpkg -i "$DEB"
check "package installed" test "$(pkg_status)" = installed
check "$HOOK is a symlink to $LIBEXEC" is_our_link "$HOOK"
check "$HOOK is ours (marker)" has_marker "$HOOK"
check "$HOOK is executable" test -x "$HOOK"
check "moved-hook record exists" test -f "$STATE/moved-hook"
moved=$(cat "$STATE/moved-hook")
check "old hook moved to $HOOKD/$moved, same bytes" cmp -s "$HOOKD/$moved" "$BK/test-hook"
check "old hook kept mode 0750" test "$(mode_of "$HOOKD/$moved")" = 750
check "qemu.d gained exactly one entry" test "$(count_entries "$HOOKD")" = $((hookd_before + 1))
"$HOOKD/$moved" dom prepare begin - </dev/null || fail "the moved hook does not run"
check "the moved hook still runs" grep -qx "dom prepare begin -" "$BK/test-hook.log"
check "$LIBEXEC 0755 root" test "$(mode_of "$LIBEXEC") $(owner_of "$LIBEXEC")" = "755 root:root"
check "$SBIN -> $LIBEXEC" test "$(readlink -f "$SBIN")" = "$LIBEXEC"
check "$CONF 0644" test "$(mode_of "$CONF")" = 644
check "$CONF is a registered conffile" bash -c "dpkg-query -W -f='\${Conffiles}' $PKG | grep -q '^ $CONF '"
check "$STATE 0700 root" test "$(mode_of "$STATE") $(owner_of "$STATE")" = "700 root:root"
check "man page installed" bash -c "gzip -dc '$MAN' | grep -q '^\.TH'"
check "README and LICENSE installed" test -f "$DOC/README.md" -a -f "$DOC/LICENSE"
check "$SBIN version runs" bash -c "'$SBIN' version >/dev/null"
check "postinst says to restart libvirtd" grep -q "restart libvirtd" "$BK/install.log"
check "postinst recommends cooperative mode" grep -qi "cooperative mode" "$BK/install.log"
case "$QEMUCONF_VARIANT" in
0)
	check "postinst says qemu.conf has strict mode" grep -q "has dynamic_ownership = 0: strict mode" "$BK/install.log"
	check "postinst says cooperative mode is recommended" grep -q "Cooperative mode is recommended" "$BK/install.log"
	;;
*) check "postinst says this is cooperative mode" grep -q "(libvirt's default) is cooperative mode" "$BK/install.log" ;;
esac
check "$UNITFILE installed" test -f "$UNITFILE"
if command -v systemctl >/dev/null; then
	check "postinst enabled the boot unit" test -L "$UNITLINK"
	check "postinst said so" grep -q "enabled libvirt-dac-hook-boot.service" "$BK/install.log"
	check "postinst enabled the watcher with libvirtd" test -L "$WATCHLINK"
fi
check "preinst said where the old hook went" grep -qF "$HOOKD/$moved" "$BK/install.log"

step "dpkg -i again (reinstall) keeps state, config and the moved hook"
echo "# test-packages: local change" >>"$CONF"
echo "test record" >"$STATE/test-record"
cp "$CONF" "$BK/conf-changed"
run "$BK/reinstall.log" dpkg -i "$DEB"
check "hook still ours" is_our_link "$HOOK"
check "moved hook still there, same record" test "$(cat "$STATE/moved-hook")" = "$moved"
check "moved hook unchanged" cmp -s "$HOOKD/$moved" "$BK/test-hook"
check "qemu.d did not grow" test "$(count_entries "$HOOKD")" = $((hookd_before + 1))
check "our hook was not moved into qemu.d" no_marker_under "$HOOKD"
check "config change kept" cmp -s "$CONF" "$BK/conf-changed"
check "state kept" test -f "$STATE/test-record"

step "upgrade to a newer version"
NEWVER=$VER+test1
run "$BK/make-newer.log" make packages "$@" PKG_VERSION="$NEWVER" DIST="$BK/newer"
run "$BK/upgrade.log" dpkg -i "$BK/newer/${PKG}_${NEWVER}_amd64.deb"
check "installed version is $NEWVER" test "$(dpkg-query -W -f='${Version}' $PKG)" = "$NEWVER"
check "hook still ours" is_our_link "$HOOK"
check "moved hook still recorded" test "$(cat "$STATE/moved-hook")" = "$moved"
check "moved hook unchanged" cmp -s "$HOOKD/$moved" "$BK/test-hook"
check "qemu.d did not grow" test "$(count_entries "$HOOKD")" = $((hookd_before + 1))
check "our hook was not moved into qemu.d" no_marker_under "$HOOKD"
check "config change kept" cmp -s "$CONF" "$BK/conf-changed"
check "state kept" test -f "$STATE/test-record"
check "upgrade said no restart is needed" grep -q "no restart needed" "$BK/upgrade.log"

# --- the .rpm, for real, in a scratch root ----------------------------------------
# rpm --root chroots into the root to run scriptlets with /bin/sh: the root
# gets a static busybox (sh, grep, sed, mv, ln, readlink, ...) and
# coreutils' install with its libraries (busybox has none), nothing else.
# There is no systemctl in it, so enabling the boot unit is checked with
# the .deb above; here the scriptlet must say it could not, and go on.
step "rpm -i, -U, -e in a scratch root"
if ! command -v busybox >/dev/null; then
	apt-get install -y busybox-static >/dev/null 2>&1 || fail "could not install busybox-static for the rpm root"
fi
RR=$BK/rpmroot
mkdir -p "$RR/bin" "$RR/usr/bin" "$RR/dev" "$RR/tmp" "$RR/var/tmp" "$RR/etc/libvirt/hooks"
cp "$(command -v busybox)" "$RR/bin/busybox"
chroot "$RR" /bin/busybox --install -s /bin
cp /usr/bin/install "$RR/usr/bin/install"
for lib in $(ldd /usr/bin/install | grep -o '/[^ ]*'); do
	mkdir -p "$RR$(dirname "$lib")"
	cp -L "$lib" "$RR$lib"
done
mknod -m 0666 "$RR/dev/null" c 1 3
printf '#!/bin/sh\necho foreign "$@"\n' >"$RR$HOOK"
chmod 0750 "$RR$HOOK"
cp -a "$RR$HOOK" "$BK/rpm-foreign"
rpmr() { rpm --root "$RR" --nodeps "$@"; }
run "$BK/rpm-initdb.log" rpm --root "$RR" --initdb
run "$BK/rpm-i.log" rpmr -i "$RPMF"
check "rpm -i: no scriptlet failed" bash -c "! grep -q 'scriptlet failed' '$BK/rpm-i.log'"
check "rpm -i: the root's database knows the package" test "$(rpm --root "$RR" -q --qf '%{VERSION}' $PKG)" = "$VER"
check "rpm -i: $HOOK is our symlink" is_our_link "$RR$HOOK"
check "rpm -i: the foreign hook moved to qemu.d" cmp -s "$RR$HOOKD/$MOVED" "$BK/rpm-foreign"
check "rpm -i: binary, man page, unit, config" test -x "$RR$LIBEXEC" -a -f "$RR$MAN" -a -f "$RR$UNITFILE" -a -f "$RR$CONF"
check "rpm -i: $SBIN runs in the root" bash -c "chroot '$RR' '$SBIN' version >/dev/null"
check "rpm -i: state dir 0700" test "$(mode_of "$RR$STATE")" = 700
check "rpm -i: said it could not enable the unit, without failing" grep -q "could not enable libvirt-dac-hook-boot.service" "$BK/rpm-i.log"
check "rpm -i: recommends cooperative mode" grep -qi "cooperative mode" "$BK/rpm-i.log"
run "$BK/rpm-U.log" rpmr -U "$BK/newer/$PKG-$NEWVER.x86_64.rpm"
check "rpm -U: no scriptlet failed" bash -c "! grep -q 'scriptlet failed' '$BK/rpm-U.log'"
check "rpm -U: version $NEWVER" test "$(rpm --root "$RR" -q --qf '%{VERSION}' $PKG)" = "$NEWVER"
check "rpm -U: hook still ours" is_our_link "$RR$HOOK"
check "rpm -U: binary still there (old %postun ran after the new files)" test -x "$RR$LIBEXEC"
check "rpm -U: foreign hook still in qemu.d, once" test "$(count_entries "$RR$HOOKD")" = 1
check "rpm -U: said no restart is needed" grep -q "no restart needed" "$BK/rpm-U.log"
run "$BK/rpm-e.log" rpmr -e "$PKG"
check "rpm -e: no scriptlet failed" bash -c "! grep -q 'scriptlet failed' '$BK/rpm-e.log'"
check "rpm -e: the database forgot it" bash -c "! rpm --root '$RR' -q $PKG >/dev/null 2>&1"
check "rpm -e: foreign hook back" cmp -s "$RR$HOOK" "$BK/rpm-foreign"
check "rpm -e: qemu.d it created is gone" absent "$RR$HOOKD"
for p in "$LIBEXEC" /usr/libexec/libvirt-dac-hook "$SBIN" "$MAN" "$UNITFILE" "$CONF" "$DOC" "$STATE"; do
	check "rpm -e: $p gone" absent "$RR$p"
done
run "$BK/rpm-i2.log" rpmr -i "$RPMF"
printf '{"version":1,"entries":[{"path":"/var/lib/libvirt/images/a.qcow2"}]}\n' >"$RR$STATE/state.json"
run "$BK/rpm-e2.log" rpmr -e "$PKG"
check "rpm -e with records: state kept" test -f "$RR$STATE/state.json"
check "rpm -e with records: said so" grep -q "kept /var/lib/libvirt-dac-hook: it holds records" "$BK/rpm-e2.log"
check "rpm -e with records: warned first" grep -q "WARNING" "$BK/rpm-e2.log"

step "real libvirt against the installed hook"
# internal/e2e holds the end-to-end tests (build tag e2e); their harness restarts libvirtd so
# it finds the hook, and with LIBVIRT_DAC_HOOK_E2E_INSTALLED=1 tests the
# installed one instead of a fresh build. TEST_PACKAGES_E2E_RUN narrows
# them (a go test -run pattern).
if [ "${TEST_PACKAGES_SKIP_E2E:-}" = 1 ]; then
	echo "   skipped: TEST_PACKAGES_SKIP_E2E=1"
elif ! grep -qs '^func Test[A-Z]' internal/e2e/*_test.go; then
	echo "   note: ./internal/e2e/ has no tests yet; nothing run"
else
	# The planted record is not the hook's journal: keep it out of the
	# tests' way, put it back for the removal checks.
	mv "$STATE/test-record" "$BK/test-record"
	set +e
	flock -u 9
	LIBVIRT_DAC_HOOK_E2E_INSTALLED=1 go test -tags e2e -count=1 -timeout 40m -run "${TEST_PACKAGES_E2E_RUN:-.}" -v ./internal/e2e/ >"$BK/e2e.log" 2>&1 9>&-
	e2e_rc=$?
	flock -w 1200 9 || fail "could not take $E2E_LOCK back after the e2e tests"
	set -e
	grep -E '^(--- |ok|FAIL|PASS)' "$BK/e2e.log" | sed 's/^/   /'
	cp "$BK/e2e.log" /tmp/test-packages-e2e.log
	[ "$e2e_rc" = 0 ] || { tail -n 60 "$BK/e2e.log" >&2; fail "end-to-end tests against the installed hook failed (full log: /tmp/test-packages-e2e.log)"; }
	check "e2e ran at least one test" grep -q '^--- PASS' "$BK/e2e.log"
	check "hook still ours after e2e" is_our_link "$HOOK"
	mv "$BK/test-record" "$STATE/test-record"
	echo "   the hook moved to qemu.d ran $(wc -l <"$BK/test-hook.log") time(s) in all"
fi

step "dpkg -r puts the old hook back"
run "$BK/remove.log" dpkg -r "$PKG"
check "status is config-files" test "$(pkg_status)" = config-files
check "$HOOK is the pre-existing hook again" cmp -s "$HOOK" "$BK/test-hook"
check "$HOOK is a plain file again" test -f "$HOOK" -a ! -L "$HOOK"
check "$HOOK kept mode 0750" test "$(mode_of "$HOOK")" = 750
check "$HOOKD/$moved is gone" absent "$HOOKD/$moved"
if [ "$hookd_existed" = no ]; then
	check "qemu.d created at install is gone" absent "$HOOKD"
else
	check "qemu.d is back to its entries" test "$(count_entries "$HOOKD")" = "$hookd_before"
fi
check "no file of ours under $HOOKS" no_marker_under "$HOOKS"
check "$LIBEXEC gone" absent "$LIBEXEC"
check "/usr/libexec/libvirt-dac-hook gone" absent /usr/libexec/libvirt-dac-hook
check "$SBIN gone" absent "$SBIN"
check "$MAN gone" absent "$MAN"
check "$CONF kept until purge" cmp -s "$CONF" "$BK/conf-changed"
check "moved-hook record gone" absent "$STATE/moved-hook"
check "state with records kept" test -f "$STATE/test-record"
check "prerm warned about records" grep -q "WARNING" "$BK/remove.log"
check "$UNITFILE gone" absent "$UNITFILE"
check "prerm disabled the boot unit" absent "$UNITLINK"
check "prerm disabled the watcher" absent "$WATCHLINK"

step "dpkg -P keeps records, removes the rest"
run "$BK/purge.log" dpkg -P "$PKG"
check "package gone" test "$(pkg_status)" = not-installed
check "$CONF gone" absent "$CONF"
check "state dir with records kept" test -f "$STATE/test-record"
check "postrm said why" grep -q "kept $STATE" "$BK/purge.log"
check "$HOOK is still the pre-existing hook" cmp -s "$HOOK" "$BK/test-hook"

step "install with no hook and no records, then purge: nothing left"
rm -f "$HOOK" "$STATE/test-record"
# What a released journal leaves: the lock and an empty state.
: >"$STATE/lock"
printf '{"version":1,"entries":[]}\n' >"$STATE/state.json"
hookd_before=$(count_entries "$HOOKD")
run "$BK/install2.log" dpkg -i "$DEB"
check "hook installed" is_our_link "$HOOK"
check "nothing moved, nothing recorded" absent "$STATE/moved-hook"
check "qemu.d untouched" test "$(count_entries "$HOOKD")" = "$hookd_before"
run "$BK/purge2.log" dpkg -P "$PKG"
for p in "$HOOK" "$STATE" "$CONF" "$LIBEXEC" /usr/libexec/libvirt-dac-hook "$SBIN" "$MAN" "$DOC" "$UNITFILE" "$UNITLINK" \
	"$HOOKS/.qemu.libvirt-dac-hook.tmp"; do
	check "$p gone" absent "$p"
done
check "no file of ours under /etc/libvirt" no_marker_under /etc/libvirt
check "dpkg knows nothing of $PKG" test "$(pkg_status)" = not-installed

current=""
echo "test-packages: $passed passed, 0 failed"
