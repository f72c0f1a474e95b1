// Package qemuproc reads libvirt's run directory of its QEMU domains
// (RunDir): whether a domain runs, and as what (Running, from its pid file
// and status XML, without calling back into libvirt), and which files the
// QEMU processes of libvirt's domains hold open (OpenFiles): a file some
// QEMU still uses must not be given back, even when no record says which
// domain has it (a disk hot-plugged into another domain, labelled by
// libvirt during that domain's run). ReadPid is the one reader of pid
// files, libvirt's and its daemons'.
//
// A process is one of libvirt's QEMUs when a pid file in libvirt's run
// directory (/run/libvirt/qemu/DOMAIN.pid, root's alone to write) names
// it and it runs as QEMU's user: never by its executable's name, which
// any user can give a program of theirs. It only reads the run directory
// and /proc; a process that exits while it is read is skipped.
package qemuproc
