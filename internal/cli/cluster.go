package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/apply"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cluster"
)

// clusterRecordDirs are the record directories of shared filesystems this
// host sees now.
func clusterRecordDirs(s *setup) []string {
	return apply.ClusterRecordDirs(s.clusterDirs())
}

// cmdForgetHost is the admin's answer to a host that died holding files
// on shared storage and never comes back: see apply.Runner.ForgetHost.
func cmdForgetHost(e *env, args []string) error {
	fs := newFlags(e, "forget-host", "forget-host HOSTID\n\nA host that died holding files on shared storage and will not come back: drops its holds from the cluster records\n(`status` lists them by host) and gives back the files no other host holds. Only when that host runs no QEMU any more.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return withCode(ExitUsage, errors.New("give the id of the host to forget (as `status` shows it)"))
	}
	gone := fs.Arg(0)
	s, r, err := byHand(e)
	if err != nil {
		return err
	}
	defer s.Close()
	if gone == r.Host() {
		return withCode(ExitUsage, fmt.Errorf("%s is this host: use `libvirt-dac-hook restore`", gone))
	}
	return r.ForgetHost(gone)
}

// clusterStatus is the cluster part of `status`.
type clusterStatus struct {
	Dir     string            `json:"dir"`
	Records []*cluster.Record `json:"records"`
}

func loadClusterStatus(s *setup) ([]clusterStatus, []error) {
	dirs := clusterRecordDirs(s)
	recs, errs := apply.Records(dirs, s.hook.LockTimeout)
	out := make([]clusterStatus, 0, len(dirs))
	for _, d := range dirs {
		if rs, ok := recs[d]; ok {
			out = append(out, clusterStatus{Dir: d, Records: rs})
		}
	}
	return out, errs
}

// printClusterStatus lists the records of shared files with their holders
// by host, marking this host's earlier boots.
func printClusterStatus(w io.Writer, cs []clusterStatus, errs []error, me, boot string) error {
	out := &printer{w: w}
	for _, c := range cs {
		if len(c.Records) == 0 {
			continue
		}
		out.printf("\nshared filesystem records in %s (this host: %s)\n", c.Dir, me)
		tw := &printer{w: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
		tw.println("PATH\tORIGINAL\tHELD AS\tHOLDERS (HOST/DOMAIN)")
		for _, r := range c.Records {
			var hs []string
			for _, h := range r.Holders {
				n := h.String()
				if h.Host == me && h.Boot != boot {
					n += " (earlier boot)"
				}
				hs = append(hs, n)
			}
			holders := strings.Join(hs, ", ")
			if len(hs) == 0 {
				holders = "(none: give-back pending)"
			}
			tw.printf("%s\t%d:%d\t%d:%d\t%s\n", r.Path, r.UID, r.GID, r.TargetUID, r.TargetGID, holders)
		}
		if err := tw.flush(); err != nil {
			return err
		}
	}
	others := false
	for _, c := range cs {
		for _, r := range c.Records {
			others = others || len(r.Others(me)) > 0
		}
	}
	if others {
		out.printf("files other hosts hold keep QEMU's owner until those hosts release them; for a host that died and never comes back: `libvirt-dac-hook forget-host HOSTID`\n")
	}
	for _, err := range errs {
		out.printf("damaged: %s\n", err)
	}
	return out.flush()
}
