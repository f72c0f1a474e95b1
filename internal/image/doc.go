// Package image reads disk image headers natively (no qemu-img subprocess)
// to find the other host files QEMU opens on an image's behalf: the backing
// file of qcow2, qcow, QED and VMDK images, the extent files of VMDK
// descriptors and the external data file of qcow2 images.
//
// What belongs here: parsing the header structures of image formats, from an
// io.ReaderAt, into an Info. What does not: opening files, resolving backing
// names against directories, walking a chain, deciding whether a name found
// in a header may be trusted. Those are the caller's job, because every name
// here comes from a file the guest may have written.
//
// The parsers follow QEMU's own rules (block/qcow2.c, block/qcow.c,
// block/qed.c, block/vmdk.c in QEMU 7.2), because QEMU is the program that
// opens the files; libvirt's probe (src/storage_file/storage_file_probe.c)
// agrees on the layouts and limits. Where QEMU would refuse a field these
// parsers read, they return an error rather than a guess; checks on parts of
// the image that name no file (refcounts, L1 tables, feature bits that do not
// change which files are opened) are left to QEMU. Where libvirt differs from
// QEMU, QEMU wins: libvirt ignores a qcow2 backing name stored beyond its
// 33 KiB probe buffer and does not pad header extensions to 8 bytes, while
// QEMU reads the name and pads.
//
// Every read is bounded: at most about 1 MiB per call whatever the header
// claims, names are capped (1023 bytes for qcow/qcow2 backing names, 4095 for
// QED and VMDK), and names are cut at the first NUL as QEMU's C strings are.
//
// The only entry point is ReadFormat, which parses an image as the format
// the domain XML names. There is deliberately no exported probe: probing a
// file that is meant to be raw is unsafe (a guest can write a qcow2 header
// into its raw disk and name any host file as backing).
package image
