// Package bench holds the performance harness (`make bench`); it has no
// code of its own that the hook runs.
//
// What lives here:
//
//   - gen: writes real qcow2 backing chains (native, valid v3 headers that
//     `qemu-img check` accepts) and the matching domain XML, for the Go
//     benchmarks in internal/plan and internal/apply and for run.sh.
//   - mkdomain: a command around gen, so run.sh can create the files.
//   - floor: the lower bound a hook could reach on the same files: only the
//     system calls no implementation can avoid (open O_PATH, fstat and
//     fchown per file, one fsynced record; then open, fstat and fchown per
//     file to give them back).
//   - empty: an empty Go program, whose run time run.sh subtracts from the
//     floor's.
//   - storm, hostfill, scale.sh: host scale. storm starts hundreds of hook
//     processes at once on overlays of one base image; hostfill records
//     thousands of held files through the journal API so scale.sh can time
//     one domain on a crowded host.
//   - run.sh: the whole-process benchmark. It runs the built hook binary as
//     libvirtd does (domain XML on stdin, real files, as root), in strict
//     mode and, with a watcher running, in cooperative mode, next to the C
//     syscall floor (../shared/reference/floor.c), the Go floor, an empty Go
//     binary, /bin/true and the previous release built from its tag, and
//     prints the medians, the ratios and PASS/MISS against the targets.
//   - timeit: runs the jobs of run.sh and scale.sh interleaved, round by
//     round, and prints each one's median, minimum, p90 and CPU time.
//   - prelude.sh: what run.sh and scale.sh share: settings, the root check,
//     the temp directory, the qemu.conf over libvirt's template, and the
//     watcher they start (bench_watch).
//
// Nothing here asserts on time: benchmarks report, they do not fail.
package bench
