// Command timeit times whole processes for run.sh and scale.sh: each job is a sequence
// of commands run without a shell, stdin from a file, and the jobs are
// interleaved round by round (A B C A B C ...) so that load from anything
// else on the machine falls on every job alike and the ratios between them
// stay fair. hyperfine runs its commands one block after the other and
// times them through a shell, whose startup it estimates and subtracts;
// for processes that live a millisecond that estimate is the noise.
//
// Usage: timeit [-n RUNS] [-w WARMUP] < JOBS
//
// JOBS has one job a line: NAME, then its steps separated by " ; ". A step
// is an argv split at blanks; "< FILE" in it sets its stdin (else
// /dev/null) and a leading "untimed" runs it before the timed steps'
// clock starts and is not counted (for resetting state). Lines starting
// with '#' are comments. For example:
//
//	prep64 untimed hook D release end - ; hook D prepare begin - < d/domain.xml
//
// Output, one line a job, tab-separated: name, median, min, mean and p90 of
// the timed steps' total wall time in microseconds, the number of runs, and
// the median CPU time (user + system) of the timed steps in microseconds:
// on a busy machine CPU time is far steadier than wall time, though it
// does not see time spent waiting for fsync.
// (No peak RSS: a forked child's ru_maxrss includes the parent's pages it
// had before exec, so run.sh asks /usr/bin/time instead.)
// A step that exits non-zero stops everything with its stderr.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// errFile receives the steps' stderr (opened O_APPEND, so truncating it
// rewinds every writer).
var errFile *os.File

type step struct {
	argv    []string
	stdin   string
	untimed bool
}

type job struct {
	name  string
	steps []step
	times []time.Duration
	cpu   []time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, in io.Reader, out, errw io.Writer) int {
	fl := flag.NewFlagSet("timeit", flag.ContinueOnError)
	fl.SetOutput(errw)
	runs := fl.Int("n", 30, "timed rounds")
	warm := fl.Int("w", 3, "untimed warm-up rounds")
	if err := fl.Parse(args); err != nil || fl.NArg() != 0 || *runs < 1 {
		warn(errw, "usage: timeit [-n RUNS] [-w WARMUP] < JOBS\n")
		return 2
	}
	f, err := os.CreateTemp("", "timeit-stderr-")
	if err != nil {
		warn(errw, "timeit: %s\n", err)
		return 1
	}
	// The file only collects the children's stderr: once the rounds are
	// done nothing reads it, so errors removing or closing it lose nothing.
	defer func() { _ = os.Remove(f.Name()) }()
	defer func() { _ = f.Close() }()
	if f, err = os.OpenFile(f.Name(), os.O_WRONLY|os.O_APPEND, 0); err != nil {
		warn(errw, "timeit: %s\n", err)
		return 1
	}
	defer func() { _ = f.Close() }()
	errFile = f
	jobs, err := parse(in)
	if err != nil {
		warn(errw, "timeit: %s\n", err)
		return 2
	}
	for round := 0; round < *warm+*runs; round++ {
		for _, j := range jobs {
			d, cpu, err := j.once()
			if err != nil {
				warn(errw, "timeit: %s: %s\n", j.name, err)
				return 1
			}
			if round >= *warm {
				j.times = append(j.times, d)
				j.cpu = append(j.cpu, cpu)
			}
		}
	}
	for _, j := range jobs {
		t := slices.Clone(j.times)
		slices.Sort(t)
		var sum time.Duration
		for _, d := range t {
			sum += d
		}
		us := func(d time.Duration) int64 { return d.Microseconds() }
		cpu := slices.Clone(j.cpu)
		slices.Sort(cpu)
		if _, err := fmt.Fprintf(out, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", j.name, us(median(t)), us(t[0]),
			us(sum/time.Duration(len(t))), us(t[len(t)*9/10]), len(t), us(median(cpu))); err != nil {
			warn(errw, "timeit: %s\n", err)
			return 1
		}
	}
	return 0
}

// warn writes a diagnostic to errw. A failed write to stderr has nowhere
// left to be reported, so its error is dropped on purpose.
func warn(errw io.Writer, format string, a ...any) {
	_, _ = fmt.Fprintf(errw, format, a...)
}

func median(t []time.Duration) time.Duration {
	n := len(t)
	if n%2 == 1 {
		return t[n/2]
	}
	return (t[n/2-1] + t[n/2]) / 2
}

func parse(in io.Reader) ([]*job, error) {
	var jobs []*job
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		j := &job{name: name}
		for _, s := range strings.Split(rest, " ; ") {
			var st step
			f := strings.Fields(s)
			if len(f) > 0 && f[0] == "untimed" {
				st.untimed, f = true, f[1:]
			}
			for i := 0; i < len(f); i++ {
				if f[i] == "<" && i+1 < len(f) {
					st.stdin = f[i+1]
					i++
					continue
				}
				st.argv = append(st.argv, f[i])
			}
			if len(st.argv) == 0 {
				return nil, fmt.Errorf("job %s: empty step in %q", name, line)
			}
			j.steps = append(j.steps, st)
		}
		if len(j.steps) == 0 {
			return nil, fmt.Errorf("job %s has no steps", name)
		}
		jobs = append(jobs, j)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("no jobs on stdin")
	}
	return jobs, nil
}

// once runs every step of j and returns the wall and CPU time of the timed
// ones.
func (j *job) once() (wall, cpu time.Duration, err error) {
	for _, s := range j.steps {
		d, c, err := s.exec()
		if err != nil {
			return 0, 0, err
		}
		if !s.untimed {
			wall += d
			cpu += c
		}
	}
	return wall, cpu, nil
}

func (s step) exec() (wall, cpu time.Duration, err error) {
	name := s.stdin
	if name == "" {
		name = os.DevNull
	}
	in, err := os.Open(name)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = in.Close() }() // opened read-only: a close error loses nothing
	// stderr goes to a file, not a pipe: a pipe would add a copying
	// goroutine to every run, diluting the ratios.
	if err := errFile.Truncate(0); err != nil {
		return 0, 0, err
	}
	c := exec.Command(s.argv[0], s.argv[1:]...)
	c.Stdin, c.Stderr = in, errFile
	start := time.Now()
	err = c.Run()
	d := time.Since(start)
	if err != nil {
		msg, _ := os.ReadFile(errFile.Name())
		return 0, 0, fmt.Errorf("%s: %w: %s", strings.Join(s.argv, " "), err, bytes.TrimSpace(msg))
	}
	return d, c.ProcessState.UserTime() + c.ProcessState.SystemTime(), nil
}
