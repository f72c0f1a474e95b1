# Sourced by run.sh and scale.sh (set $bench to the script's name first):
# the settings they share, the root check, the hook binary, and
# bench_tmp, which makes the work directory and builds the helper
# programs into $tmp/bin.

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
QEMU_UID=64055
QEMU_GID=107

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
go=${GO:-go}

if [ "$(id -u)" != 0 ]; then
	echo "$bench: must run as root: the hook chowns real files" >&2
	exit 1
fi
if [ -z "${HOOK:-}" ]; then
	make -s -C "$root" build >&2
	HOOK=$root/bin/libvirt-dac-hook
fi
[ -x "$HOOK" ] || { echo "$bench: no hook binary at $HOOK" >&2; exit 1; }

# bench_tmp PREFIX PROGRAM...: a temp dir under $BENCH_DIR, removed on exit,
# with the programs of internal/bench/ built into $tmp/bin like the hook
# (static, stripped), so that they pay the same Go runtime start. QEMU must
# be able to search down to the images: a 0700 temp dir would add ACL steps
# that are not what is measured.
bench_tmp() {
	local prefix=$1 cmd
	shift
	tmp=$(mktemp -d "$BENCH_DIR/$prefix.XXXXXX")
	trap 'bench_cleanup' EXIT
	chmod 0755 "$tmp"
	mkdir -p "$tmp/bin"
	for cmd in "$@"; do
		(cd "$root" && CGO_ENABLED=0 $go build -trimpath -ldflags '-s -w' -o "$tmp/bin/$cmd" "./internal/bench/$cmd")
	done
}

# bench_cleanup stops the watchers bench_watch started and removes $tmp.
watchers=()
bench_cleanup() {
	local pid
	for pid in "${watchers[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}

# QEMU_CONF_TEMPLATE is libvirt's packaged qemu.conf (about 1,000 lines of
# comments): the hook reads qemu.conf on every prepare and release, and a
# host's file is that template with a few settings, not three lines.
QEMU_CONF_TEMPLATE=${QEMU_CONF_TEMPLATE:-$root/../shared/reference/libvirt-9.0.0/qemu.conf}

# qemu_conf FILE SETTING...: a qemu.conf with QEMU's user and group, the
# given settings, then the template (the first occurrence of a key wins).
qemu_conf() {
	local f=$1 kv
	shift
	{
		printf 'user = "+%s"\ngroup = "+%s"\n' "$QEMU_UID" "$QEMU_GID"
		for kv in "$@"; do printf '%s\n' "$kv"; done
		if [ -f "$QEMU_CONF_TEMPLATE" ]; then cat "$QEMU_CONF_TEMPLATE"; fi
	} >"$f"
}

# bench_watch CONFIG: runs the watcher of cooperative mode on CONFIG's state
# directory, as libvirt-dac-hook-watch.service does, until the script ends;
# returns once it answers the handshake (its socket exists).
bench_watch() {
	local conf=$1 state i
	state=$(awk -F'"' '/^state_dir/ {print $2}' "$conf")
	LIBVIRT_DAC_HOOK_CONFIG=$conf "$HOOK" watch 2>>"$tmp/watch.log" &
	watchers+=($!)
	for i in $(seq 100); do
		[ -S "$state/watch.sock" ] && return 0
		sleep 0.05
	done
	echo "$bench: the watcher did not start (see $tmp/watch.log)" >&2
	exit 1
}
