// Package domain turns a libvirt domain XML into the list of host resources
// QEMU will open. It is pure: it reads only the bytes it is given and never
// touches the host, so the same XML always yields the same resources.
// Finding things that need the host (backing chains in image headers, USB
// devices in sysfs) is the probe package's job.
//
// What is listed mirrors libvirt's DAC driver (src/security/security_dac.c,
// virSecurityDACSetAllLabel): Parse emits what that driver would chown and
// leaves out what it skips; emit.go lists the omissions and why. Entry
// point: Parse. Types: Domain, Resource and the host-lookup selectors.
package domain
