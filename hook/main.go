// Command libvirt-dac-hook is libvirt's qemu hook: installed as
// /etc/libvirt/hooks/qemu it gives QEMU's unprivileged user the files a
// domain needs at prepare and gives them back at release.
package main

import (
	"os"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
