package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
)

// labelledFile is what the watcher records of p just before libvirt's
// label (a proven one): its identity and its owner now.
func labelledFile(t *testing.T, p string) inventory.File {
	t.Helper()
	h, err := owner.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, err := inventory.Identify(h, filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	f.Proven = true
	return f
}

// TestStatusSaysWhatIsNotGivenBack: a file that became QEMU's during a
// run by a change not shown to be libvirt's is named by status, and
// release leaves it as it is.
func TestStatusSaysWhatIsNotGivenBack(t *testing.T) {
	f := newFixture(t)
	f.write("img/odd.iso", "iso", imageUID+9)
	xml := f.prepareCooperative()
	odd := labelledFile(t, f.path("img/odd.iso"))
	odd.Proven, odd.By = false, "a process gone before its event was read"
	if err := os.Chown(f.path("img/odd.iso"), qemuID, qemuID); err != nil {
		t.Fatal(err)
	}
	if err := inventory.SaveLabelled(f.state, &inventory.Labelled{Files: []inventory.File{odd}}); err != nil {
		t.Fatal(err)
	}
	res := run(noRead{t}, "status")
	if res.code != 0 || !strings.Contains(res.stdout, f.path("img/odd.iso")) || !strings.Contains(res.stdout, "not shown to be libvirt's label (a process gone") {
		t.Errorf("status = %+v, want odd.iso named as not given back", res)
	}
	res = run(noRead{t}, "status", "--json")
	var st struct {
		Labelled []struct {
			Path      string `json:"path"`
			GivenBack bool   `json:"given_back"`
		} `json:"labelled"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || len(st.Labelled) != 1 || st.Labelled[0].Path != f.path("img/odd.iso") || st.Labelled[0].GivenBack {
		t.Errorf("status --json labelled = %+v (%v), want odd.iso, not given back\n%s", st.Labelled, err, res.stdout)
	}
	f.release(xml)
	f.checkOwners(map[string]string{f.path("img/odd.iso"): qemuOwner})
}

// TestDoctorWatcher: in cooperative mode doctor says whether a watcher
// answers.
func TestDoctorWatcher(t *testing.T) {
	f := newFixture(t)
	finding := func() (status, detail string) {
		t.Helper()
		res := run(noRead{t}, "doctor", "--json")
		var rep struct {
			Findings []struct{ Check, Status, Detail string } `json:"findings"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
			t.Fatalf("%v: %s", err, res.stdout)
		}
		for _, fd := range rep.Findings {
			if fd.Check == "watcher" {
				return fd.Status, fd.Detail
			}
		}
		t.Fatalf("no watcher finding in %s", res.stdout)
		return "", ""
	}
	if st, d := finding(); st != "warn" || !strings.Contains(d, "no watcher running") {
		t.Errorf("doctor without a watcher: watcher = %s (%s), want a warning", st, d)
	}
	f.startWatcher()
	if st, d := finding(); st != "ok" {
		t.Errorf("doctor with a watcher: watcher = %s (%s), want ok", st, d)
	}
}
