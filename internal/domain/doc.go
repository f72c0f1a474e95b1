// Package domain turns a libvirt domain XML into the list of host resources
// QEMU will open. It is pure: it reads only the bytes it is given and never
// touches the host, so the same XML always yields the same resources.
// Finding things that need the host is the job of the plan package, which
// reads backing chains from image headers (package image) and device nodes
// from sysfs (package sysfs).
//
// What is listed mirrors libvirt's DAC driver (src/security/security_dac.c,
// virSecurityDACSetAllLabel): Parse emits what that driver would chown and
// leaves out what it skips; emit.go lists the omissions and why. Entry
// point: Parse. Types: Domain, Resource and the host-lookup selectors, and
// Kind, whose table in kinds.go is the one place that says what each kind
// of resource may be and how the host side treats it.
package domain
