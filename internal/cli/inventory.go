package cli

import (
	"text/tabwriter"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
)

// printLabelled adds to status what the watcher saw libvirt label during
// the runs of domains still recorded (cooperative mode), and which of
// those release will not give back because the change was not shown to be
// libvirt's. Nothing when there is none, or status reads a state file.
func printLabelled(e *env, s *setup, stateFile string) error {
	lab, err := labelledStatus(s, stateFile)
	if err != nil || len(lab) == 0 {
		return err
	}
	tw := &printer{w: tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)}
	tw.println("\nBECAME QEMU'S DURING A RUN\tOWNER BEFORE\tAT RELEASE")
	for _, f := range lab {
		what := "given back (libvirt labelled it)"
		if !f.GivenBack {
			what = "left as it is: not shown to be libvirt's label (" + f.By + ")"
		}
		tw.printf("%s\t%d:%d\t%s\n", f.Path, f.UID, f.GID, what)
	}
	return tw.flush()
}

// labelledEntry is one file of status's "labelled" list.
type labelledEntry struct {
	Path string `json:"path"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	// GivenBack says whether release gives it back: libvirt was shown to
	// have made the change.
	GivenBack bool   `json:"given_back"`
	By        string `json:"by,omitempty"`
}

// labelledStatus is what the watcher wrote down; none when status reads
// a state file kept aside.
func labelledStatus(s *setup, stateFile string) ([]labelledEntry, error) {
	if stateFile != "" {
		return nil, nil
	}
	l, err := inventory.LoadLabelled(s.hook.StateDir)
	if err != nil {
		return nil, withCode(ExitState, err)
	}
	var out []labelledEntry
	for _, f := range l.Files {
		out = append(out, labelledEntry{Path: f.Path, UID: f.UID, GID: f.GID, GivenBack: f.Proven, By: f.By})
	}
	return out, nil
}
