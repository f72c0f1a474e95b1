#!/usr/bin/env bash
# Whole-process benchmark of libvirt-dac-hook.
#
# Runs the built hook binary exactly as libvirtd does (`qemu DOMAIN prepare
# begin -` with the domain XML on stdin, then `qemu DOMAIN release end -`),
# as root, on real qcow2 chains in a temp directory, next to the floor
# program (only the unavoidable syscalls on the same files) and /bin/true.
# Prints medians, the ratios, and PASS/MISS against the targets. Nothing
# fails on a MISS: the exit status is 0 unless something could not run.
#
# Usage (as root, from anywhere):  internal/bench/run.sh
# Environment:
#   RUNS=30 WARMUP=3     timed and warm-up rounds (jobs are interleaved)
#   HOOK=path            use this hook binary instead of `make build`
#   BENCH_DIR=/var/tmp   where the temp dir goes. Not /tmp: that is often a
#                        tmpfs, where fsync costs nothing and the journal's
#                        durability would look free.
#   HYPERFINE=1          also cross-check the 64-image pair with hyperfine
#                        (installed with apt-get if missing)
#   FLOOR_C=path         the C syscall floor's source (default
#                        ../shared/reference/floor.c beside the repository)
#   PREV=path            the previous release's binary; default: built from
#                        PREV_REF (default: the newest v* tag before HEAD)
#                        with `git archive`, so one run compares both
#
# Definitions:
#   pair N     = median of (prepare + release) wall time, two processes,
#                for the domain with N image files.
#   per-image  = marginal cost: (pair N - pair 1) / (N - 1). Subtracting
#                the 1-disk domain removes the fixed cost (process start,
#                config, lock, journal fsyncs), which a plain time/N would
#                spread thinner over 256 images than over 64 and so flatter
#                the 256-disk domain. time/N is printed too, for reference.
#   floor C    = the C syscall floor (FLOOR_C): one process doing, per
#                path, open O_PATH, fstat, fchownat, one fsynced journal,
#                and back. The ratio the targets use.
#   coop64     = the 64-image pair in cooperative mode (libvirt's DAC
#                driver on), with the watcher running and answering each
#                prepare's and release's handshake.
#   qemu.conf  = libvirt's packaged template (QEMU_CONF_TEMPLATE) under the
#                few settings each mode needs, as on a real host.
#   prev       = the 64-image pair and the ignored event run with the
#                previous release's binary, interleaved with today's, each
#                with its own state directory.
#   floor      = the same two-process cycle by internal/bench/floor. It is
#                a Go program, so it pays two Go runtime starts; the ratio
#                is also printed against the floor minus two runs of an
#                empty Go static binary (internal/bench/empty): the system
#                calls alone.
set -euo pipefail

bench=run.sh
. "$(dirname "$0")/prelude.sh"

if ! [ -x /usr/bin/time ]; then
	apt-get install -y -q time >/dev/null
fi

# The floor and the empty binary are built like the hook, so all pay the
# same Go runtime start and only the work differs.
bench_tmp libvirt-dac-hook-bench floor empty mkdomain timeit
mkdir -p "$tmp/state" "$tmp/prev-state"

FLOOR_C=${FLOOR_C:-$root/../shared/reference/floor.c}
[ -f "$FLOOR_C" ] || { echo "$bench: no C floor at $FLOOR_C (set FLOOR_C)" >&2; exit 1; }
command -v cc >/dev/null || apt-get install -y -q gcc >/dev/null
cc -O2 -o "$tmp/bin/floorc" "$FLOOR_C"

# The previous release, built from its tag the way `make build` builds.
if [ -z "${PREV:-}" ]; then
	PREV_REF=${PREV_REF:-$(git -C "$root" describe --tags --abbrev=0 --match 'v*' HEAD^ 2>/dev/null || true)}
	# A clone without tags still has the commit 0.2.0 was tagged at.
	if [ -z "$PREV_REF" ] && git -C "$root" cat-file -e 7b8b60d^{commit} 2>/dev/null; then
		PREV_REF=7b8b60d
	fi
	if [ -n "$PREV_REF" ]; then
		mkdir "$tmp/prev-src"
		git -C "$root" archive "$PREV_REF" | tar -x -C "$tmp/prev-src"
		(cd "$tmp/prev-src" && CGO_ENABLED=0 $go build -trimpath -ldflags '-s -w' -o "$tmp/bin/prev" ./hook)
		PREV=$tmp/bin/prev
	else
		echo "$bench: no v* tag before HEAD and no PREV: the previous release is not compared" >&2
	fi
fi

declare -A dom
for shape in 1:1:1 64:16:4 256:256:1; do
	IFS=: read -r n disks depth <<<"$shape"
	mkdir -m 0755 "$tmp/d$n"
	dom[$n]=$("$tmp/bin/mkdomain" "$tmp/d$n" "$disks" "$depth")
done

# Strict mode (libvirt's DAC driver off) for the hook and the previous
# release; cooperative mode (on, libvirt's default) for the hook, with its
# watcher running as the service runs it.
qemu_conf "$tmp/qemu.conf" "dynamic_ownership = 0"
qemu_conf "$tmp/coop-qemu.conf" "dynamic_ownership = 1"
mkdir -p "$tmp/coop-state"
for c in hook:state:qemu prev:prev-state:qemu coop:coop-state:coop-qemu; do
	IFS=: read -r name state qc <<<"$c"
	cat >"$tmp/$name.conf" <<EOF
state_dir = "$tmp/$state"
qemu_conf = "$tmp/$qc.conf"
syslog = 0
log_file = "$tmp/$name.log"
EOF
done
export LIBVIRT_DAC_HOOK_CONFIG=$tmp/hook.conf
bench_watch "$tmp/coop.conf"

# Check once that the hook really chowns and gives back, so a broken hook
# cannot look fast.
owner() { stat -c %u:%g "$1"; }
first=$(head -n1 "$tmp/d64/images")
"$HOOK" "${dom[64]}" prepare begin - <"$tmp/d64/domain.xml"
[ "$(owner "$first")" = "$QEMU_UID:$QEMU_GID" ] || { echo "run.sh: prepare did not chown $first" >&2; exit 1; }
"$HOOK" "${dom[64]}" release end -
[ "$(owner "$first")" = 0:0 ] || { echo "run.sh: release did not restore $first" >&2; exit 1; }

jobs=$tmp/jobs
: >"$jobs"
for n in 1 64 256; do
	d=${dom[$n]} x=$tmp/d$n/domain.xml
	cat >>"$jobs" <<EOF
pair$n $HOOK $d prepare begin - < $x ; $HOOK $d release end -
floor$n $tmp/bin/floor prepare $tmp/d$n/images $tmp/floor.rec $QEMU_UID:$QEMU_GID ; $tmp/bin/floor release $tmp/floor.rec
prep$n untimed $HOOK $d release end - ; $HOOK $d prepare begin - < $x
rel$n untimed $HOOK $d prepare begin - < $x ; $HOOK $d release end -
EOF
done
cc="env LIBVIRT_DAC_HOOK_CONFIG=$tmp/coop.conf $HOOK"
cat >>"$jobs" <<EOF
coop64 $cc ${dom[64]} prepare begin - < $tmp/d64/domain.xml ; $cc ${dom[64]} release end -
EOF
cat >>"$jobs" <<EOF
floorc64 $tmp/bin/floorc $tmp/d64/images $QEMU_UID $QEMU_GID $tmp/floorc.rec < $tmp/d64/domain.xml
EOF
if [ -n "${PREV:-}" ]; then
	pc="env LIBVIRT_DAC_HOOK_CONFIG=$tmp/prev.conf $PREV"
	hc="env LIBVIRT_DAC_HOOK_CONFIG=$tmp/hook.conf $HOOK"
	cat >>"$jobs" <<EOF
prevpair64 $pc ${dom[64]} prepare begin - < $tmp/d64/domain.xml ; $pc ${dom[64]} release end -
hookpair64 $hc ${dom[64]} prepare begin - < $tmp/d64/domain.xml ; $hc ${dom[64]} release end -
prevignored64 $PREV ${dom[64]} started begin - < $tmp/d64/domain.xml
EOF
fi
cat >>"$jobs" <<EOF
empty2 $tmp/bin/empty ; $tmp/bin/empty
ignored64 $HOOK ${dom[64]} started begin - < $tmp/d64/domain.xml
true /bin/true < $tmp/d64/domain.xml
EOF

echo "timing $RUNS rounds (+$WARMUP warm-up) of $(wc -l <"$jobs") interleaved jobs in $tmp ..." >&2
"$tmp/bin/timeit" -n "$RUNS" -w "$WARMUP" <"$jobs" >"$tmp/results"

# Peak RSS of the 256-disk domain: prepare and release, the larger.
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}'; }
rss_prep=$(rss "$HOOK" "${dom[256]}" prepare begin - <"$tmp/d256/domain.xml")
rss_rel=$(rss "$HOOK" "${dom[256]}" release end - </dev/null)
size=$(stat -c %s "$HOOK")

awk -v rss_prep="$rss_prep" -v rss_rel="$rss_rel" -v size="$size" -v hook="$HOOK" -v runs="$RUNS" -v prev="${PREV:-}" -v prevref="${PREV_REF:-$PREV}" '
{ med[$1] = $2; mn[$1] = $3; p90[$1] = $5; cpu[$1] = $7 }
function ms(us) { return sprintf("%.2f", us / 1000) }
function verdict(ok) { return ok ? "PASS" : "MISS" }
END {
	printf "\nlibvirt-dac-hook whole-process benchmark (%s, %d interleaved runs each)\n\n", hook, runs
	printf "%-44s %10s %10s %10s %10s\n", "job", "median ms", "min ms", "p90 ms", "cpu ms"
	n = split("pair1 pair64 pair256 coop64 floorc64 floor1 floor64 floor256 empty2 prep1 rel1 prep64 rel64 prep256 rel256 ignored64 true" (prev != "" ? " hookpair64 prevpair64 prevignored64" : ""), order, " ")
	label["floorc64"] = "C syscall floor, 64 images (one process)"
	label["coop64"] = "cooperative mode, watcher running, 64 images"
	label["hookpair64"] = "hook prepare+release, 64 images, via env"
	label["prevpair64"] = "previous release, the same"
	label["prevignored64"] = "previous release, ignored event"
	label["empty2"] = "two runs of an empty Go static binary"
	label["pair1"] = "hook prepare+release, 1 disk (1 image)"
	label["pair64"] = "hook prepare+release, 16 disks x 4 (64)"
	label["pair256"] = "hook prepare+release, 256 disks (256)"
	label["floor1"] = "floor prepare+release, 1 image"
	label["floor64"] = "floor prepare+release, 64 images"
	label["floor256"] = "floor prepare+release, 256 images"
	label["prep1"] = "hook prepare only, 1 image"
	label["rel1"] = "hook release only, 1 image"
	label["prep64"] = "hook prepare only, 64 images"
	label["rel64"] = "hook release only, 64 images"
	label["prep256"] = "hook prepare only, 256 images"
	label["rel256"] = "hook release only, 256 images"
	label["ignored64"] = "hook started begin - (ignored), 64-image XML"
	label["true"] = "/bin/true, same stdin"
	for (i = 1; i <= n; i++) { j = order[i]; printf "%-44s %10s %10s %10s %10s\n", label[j], ms(med[j]), ms(mn[j]), ms(p90[j]), ms(cpu[j]) }

	r1 = med["pair64"] / med["floor64"]
	# The floor is a Go program: two runtime starts that are no system
	# call of the work. Without them it is the system calls alone.
	f64 = med["floor64"] - med["empty2"]
	r1s = med["pair64"] / f64
	m64 = (med["pair64"] - med["pair1"]) / 63
	m256 = (med["pair256"] - med["pair1"]) / 255
	r2 = m256 / m64
	r3 = med["ignored64"] / med["true"]
	rss = rss_prep > rss_rel ? rss_prep : rss_rel
	printf "\n%-58s %14s %10s %6s\n", "target", "measured", "limit", ""
	rc = med["pair64"] / med["floorc64"]
	printf "%-58s %13.2fx %9s  %s\n", "prepare+release 64 images (strict) / C floor", rc, "3x", verdict(rc <= 3)
	rcc = med["coop64"] / med["floorc64"]
	printf "%-58s %13.2fx %9s  %s\n", "prepare+release 64 images (cooperative) / C floor", rcc, "3x", verdict(rcc <= 3)
	if (prev != "") {
		rp = med["hookpair64"] / med["prevpair64"]
		printf "%-58s %13.2fx %9s  %s\n", "today / previous release (" prevref "), 64 strict", rp, "1x", verdict(rp <= 1)
		ri = med["ignored64"] / med["prevignored64"]
		printf "%-58s %13.2fx\n", "ignored event: today / previous release", ri
	}
	printf "%-58s %13.2fx %9s  %s\n", "prepare+release 64 images / floor", r1, "3x", verdict(r1 <= 3)
	printf "%-58s %13.2fx %9s  %s\n", "... / floor minus its Go runtime start (" ms(f64) " ms)", r1s, "3x", verdict(r1s <= 3)
	printf "%-58s %13.2fx %9s  %s\n", "per-image cost 256 disks / 16x4 (marginal, see header)", r2, "1.3x", verdict(r2 <= 1.3)
	printf "%-58s %13.2fx %9s  %s\n", "ignored event / /bin/true", r3, "1.3x", verdict(r3 <= 1.3)
	printf "%-58s %10.1f MiB %6s MiB  %s\n", "peak RSS, 256 disks (max of prepare " rss_prep " KiB, release " rss_rel " KiB)", rss / 1024, "20", verdict(rss <= 20 * 1024)
	printf "%-58s %11.2f MB %7s MB  %s\n", "binary size (" size " bytes; MB = 10^6)", size / 1e6, "12", verdict(size <= 12e6)
	printf "\nper image: marginal %.1f us at 64, %.1f us at 256; time/N %.1f us at 64, %.1f us at 256 (ratio %.2fx)\n",
		m64, m256, med["pair64"] / 64, med["pair256"] / 256, (med["pair256"] / 256) / (med["pair64"] / 64)
	c64 = (cpu["pair64"] - cpu["pair1"]) / 63
	c256 = (cpu["pair256"] - cpu["pair1"]) / 255
	printf "per image, CPU time (user+sys): marginal %.1f us at 64, %.1f us at 256 (ratio %.2fx)\n", c64, c256, c256 / c64
	printf "floor per image: marginal %.1f us at 64, %.1f us at 256\n",
		(med["floor64"] - med["floor1"]) / 63, (med["floor256"] - med["floor1"]) / 255
}' "$tmp/results"

if [ "${HYPERFINE:-0}" = 1 ]; then
	command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
	d=${dom[64]}
	hyperfine --warmup "$WARMUP" --runs "$RUNS" \
		"$HOOK $d prepare begin - < $tmp/d64/domain.xml; $HOOK $d release end -" \
		"$tmp/bin/floor prepare $tmp/d64/images $tmp/floor.rec $QEMU_UID:$QEMU_GID; $tmp/bin/floor release $tmp/floor.rec"
fi
