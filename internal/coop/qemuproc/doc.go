// Package qemuproc finds the files running QEMU processes hold open, by
// reading /proc: a file some QEMU still uses must not be given back, even
// when no record says which domain has it (a disk hot-plugged into another
// domain, labelled by libvirt during that domain's run).
//
// It only reads /proc. Processes are QEMU when their executable's name
// starts with "qemu-system-" or is "qemu-kvm"; a process that exits while
// it is read is skipped.
package qemuproc
