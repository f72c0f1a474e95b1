// Command mkdomain writes a benchmark domain for run.sh and scale.sh: DISKS qcow2 chains
// of DEPTH images in DIR, DIR/domain.xml naming their top images and
// DIR/images listing every image. It prints the domain name.
//
// Usage: mkdomain DIR DISKS DEPTH
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/bench/gen"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: mkdomain DIR DISKS DEPTH")
		return 2
	}
	disks, err1 := strconv.Atoi(args[1])
	depth, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "mkdomain: DISKS and DEPTH must be numbers")
		return 2
	}
	s, err := gen.Domain(args[0], disks, depth)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkdomain: %s\n", err)
		return 1
	}
	fmt.Println(s.Name)
	return 0
}
