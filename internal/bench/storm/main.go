// Command storm is the autostart storm: N domains, each one disk that is
// its own qcow2 overlay on one shared base image, prepared by N hook
// processes started at once (as libvirtd does when guests autostart after
// a reboot), then released the same way. It prints the seconds each phase
// took, whether every hook succeeded, and whether every owner is back as
// it was; PASS/MISS against the target. It never fails on a slow result.
//
//	storm DIR N HOOK [TARGET_SECONDS]
//
// DIR must exist and be empty; the hook's config (state_dir, qemu.conf)
// comes from the environment, as scale.sh sets it.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/bench/gen"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) < 3 || len(args) > 4 {
		fmt.Fprintln(os.Stderr, "usage: storm DIR N HOOK [TARGET_SECONDS]")
		return 2
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 {
		fmt.Fprintln(os.Stderr, "storm: N must be a positive number")
		return 2
	}
	target := 2.0
	if len(args) == 4 {
		if target, err = strconv.ParseFloat(args[3], 64); err != nil {
			fmt.Fprintln(os.Stderr, "storm: TARGET_SECONDS must be a number")
			return 2
		}
	}
	if err := storm(args[0], n, args[2], target); err != nil {
		fmt.Fprintf(os.Stderr, "storm: %s\n", err)
		return 1
	}
	return 0
}

type owner struct{ uid, gid uint32 }

func owners(paths []string) (map[string]owner, error) {
	out := make(map[string]owner, len(paths))
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		st := fi.Sys().(*syscall.Stat_t)
		out[p] = owner{st.Uid, st.Gid}
	}
	return out, nil
}

// phase starts one hook process per domain at once and waits for all.
// It also returns the CPU time (user + system) the hooks used, which says
// more than the wall time on a machine shared with other work.
func phase(hook string, specs []*gen.Spec, op, subop string) (time.Duration, time.Duration, []string) {
	var (
		mu       sync.Mutex
		failures []string
		cpu      time.Duration
		wg       sync.WaitGroup
	)
	start := make(chan struct{})
	for _, s := range specs {
		cmd := exec.Command(hook, s.Name, op, subop, "-")
		cmd.Stdin = bytes.NewReader(s.XML)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := cmd.Run()
			mu.Lock()
			defer mu.Unlock()
			if cmd.ProcessState != nil {
				cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s %s: %s: %s", s.Name, op, err, bytes.TrimSpace(stderr.Bytes())))
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	return time.Since(t0), cpu, failures
}

func storm(dir string, n int, hook string, target float64) error {
	specs, err := gen.Overlays(dir, n)
	if err != nil {
		return err
	}
	var all []string
	for _, s := range specs {
		all = append(all, s.Images[0])
	}
	all = append(all, specs[0].Images[1]) // the shared base
	before, err := owners(all)
	if err != nil {
		return err
	}
	verdict := func(d time.Duration, failures []string) string {
		if len(failures) == 0 && d.Seconds() <= target {
			return "PASS"
		}
		return "MISS"
	}
	prep, prepCPU, pf := phase(hook, specs, "prepare", "begin")
	held, err := owners(all)
	if err != nil {
		return err
	}
	notHeld := 0
	for p, o := range held {
		if o == before[p] {
			notHeld++
		}
	}
	rel, relCPU, rf := phase(hook, specs, "release", "end")
	after, err := owners(all)
	if err != nil {
		return err
	}
	changed := 0
	for p, o := range after {
		if o != before[p] {
			changed++
			if changed <= 3 {
				fmt.Fprintf(os.Stderr, "storm: %s is %d:%d after the releases, was %d:%d\n", p, o.uid, o.gid, before[p].uid, before[p].gid)
			}
		}
	}
	for _, f := range append(pf, rf...)[:min(5, len(pf)+len(rf))] {
		fmt.Fprintf(os.Stderr, "storm: failed: %s\n", f)
	}
	fmt.Printf("%-52s %8s %8s %8s %8s  %s\n", "storm phase", "seconds", "cpu s", "failed", "target", "")
	fmt.Printf("%-52s %8.2f %8.2f %8d %7.1fs  %s\n", fmt.Sprintf("prepare: %d hooks at once, overlays on one base", n), prep.Seconds(), prepCPU.Seconds(), len(pf), target, verdict(prep, pf))
	fmt.Printf("%-52s %8.2f %8.2f %8d %7.1fs  %s\n", fmt.Sprintf("release: %d hooks at once", n), rel.Seconds(), relCPU.Seconds(), len(rf), target, verdict(rel, rf))
	ok := "PASS"
	if notHeld > 0 || changed > 0 {
		ok = "MISS"
	}
	fmt.Printf("%-52s %8s %8s %8s %8s  %s\n", fmt.Sprintf("owners: %d of %d files not given to QEMU, %d not given back", notHeld, len(all), changed), "", "", "", "", ok)
	if changed > 0 {
		return errors.New("owners not given back: see above")
	}
	return nil
}
