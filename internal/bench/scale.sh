#!/usr/bin/env bash
# Host-scale benchmarks of the journal and its lock, as root.
#
#  (a) the storm: STORM_N domains (default 500), each one qcow2 overlay on
#      one shared base, prepared by STORM_N hook processes started at once
#      (libvirtd autostarting guests after a reboot), then released the
#      same way, in cooperative mode with the watcher running. Seconds per
#      phase; every hook must succeed and every owner must be back
#      afterwards. Target: 1.5 s per phase.
#  (b) one small domain's prepare+release when the host already holds 0,
#      1,000 and 10,000 files (recorded through the journal API by
#      hostfill, not by running 10,000 hooks). Target: 10k / 0 <= 1.2.
#
# Prints numbers and PASS/MISS; never fails on a slow result.
# Environment: HOOK, RUNS (default 30), STORM_N (500), BENCH_DIR (/var/tmp:
# not a tmpfs, where fsync would look free).
set -euo pipefail

bench=scale.sh
STORM_N=${STORM_N:-500}
. "$(dirname "$0")/prelude.sh"

bench_tmp libvirt-dac-hook-scale storm hostfill mkdomain timeit
# Cooperative mode (libvirt's default), the watcher running for the storm.
qemu_conf "$tmp/qemu.conf" "dynamic_ownership = 1"
# conf NAME: a hook config whose journal is $tmp/NAME.state
conf() {
	cat >"$tmp/$1.conf" <<EOF
state_dir = "$tmp/$1.state"
qemu_conf = "$tmp/qemu.conf"
syslog = 0
log_file = "$tmp/$1.log"
EOF
	echo "$tmp/$1.conf"
}

# (a) the storm
mkdir -m 0755 "$tmp/storm"
echo "storm: $STORM_N prepares at once, then $STORM_N releases ..." >&2
mkdir -p "$tmp/storm.state"
bench_watch "$(conf storm)"
LIBVIRT_DAC_HOOK_CONFIG=$tmp/storm.conf "$tmp/bin/storm" "$tmp/storm" "$STORM_N" "$HOOK" 1.5

# (b) one small domain on a host holding 0, 1,000 and 10,000 files. env(1)
# sets each job's config: timeit runs commands without a shell.
jobs=$tmp/jobs
: >"$jobs"
for n in 0 1000 10000; do
	mkdir -m 0755 "$tmp/held$n" "$tmp/dom$n"
	c=$(conf "host$n")
	"$tmp/bin/hostfill" "$tmp/host$n.state" "$tmp/held$n" "$n" "$QEMU_UID:$QEMU_GID"
	d=$("$tmp/bin/mkdomain" "$tmp/dom$n" 1 1)
	echo "host$n env LIBVIRT_DAC_HOOK_CONFIG=$c $HOOK $d prepare begin - < $tmp/dom$n/domain.xml ; env LIBVIRT_DAC_HOOK_CONFIG=$c $HOOK $d release end -" >>"$jobs"
done
echo "timing $RUNS rounds (+$WARMUP warm-up) of one prepare+release on hosts holding 0, 1000, 10000 files ..." >&2
"$tmp/bin/timeit" -n "$RUNS" -w "$WARMUP" <"$jobs" >"$tmp/results"
awk '
{ med[$1] = $2; cpu[$1] = $7 }
END {
	printf "\n%-52s %10s %10s\n", "one 1-disk prepare+release, host already holding", "median ms", "cpu ms"
	split("host0 host1000 host10000", order, " ")
	for (i = 1; i <= 3; i++) { j = order[i]; printf "%-52s %10.2f %10.2f\n", substr(j, 5) " files", med[j] / 1000, cpu[j] / 1000 }
	r1 = med["host1000"] / med["host0"]; r = med["host10000"] / med["host0"]
	printf "%-52s %9.2fx\n", "1,000 files / none", r1
	printf "%-52s %9.2fx %9s  %s\n", "10,000 files / none", r, "1.2x", r <= 1.2 ? "PASS" : "MISS"
}' "$tmp/results"
