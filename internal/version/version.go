// Package version holds the build version and the marker that identifies
// our binary on disk (make install and the packages use it to tell our
// hook from someone else's before replacing it).
package version

// Version is stamped in at build time with -ldflags "-X ...version.Version=...".
var Version = "dev"

// Marker is a byte string embedded in every build of the binary. Installers
// grep for it to decide whether an existing /etc/libvirt/hooks/qemu is ours.
var Marker = "libvirt-dac-hook-binary-marker-v1"
