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
	trap 'rm -rf "$tmp"' EXIT
	chmod 0755 "$tmp"
	mkdir -p "$tmp/bin"
	for cmd in "$@"; do
		(cd "$root" && CGO_ENABLED=0 $go build -trimpath -ldflags '-s -w' -o "$tmp/bin/$cmd" "./internal/bench/$cmd")
	done
}
