package cli_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

const transientDisk = `    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$ROOT/img/disk.raw'/><target dev='vda' bus='virtio'/><transient/></disk>`

func TestTransientDiskByMode(t *testing.T) {
	for _, tc := range []struct {
		name, qemuConf string
		code           int
	}{
		{"strict refuses", "dynamic_ownership = 0\n", 1},
		{"cooperative accepts", "dynamic_ownership = 1\n", 0},
		{"libvirt default is cooperative", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\n%s", qemuID, qemuID, tc.qemuConf))
			before := f.owners()
			res := run(strings.NewReader(f.domainXML("vm1", transientDisk)), "vm1", "prepare", "begin", "-")
			if res.code != tc.code || res.stdout != "" {
				t.Fatalf("prepare = exit %d, stdout %q, stderr %q; want exit %d", res.code, res.stdout, res.stderr, tc.code)
			}
			if tc.code != 0 {
				if !strings.Contains(res.stderr, "disk vda is <transient/>") || !strings.Contains(res.stderr, "dynamic_ownership = 1") || strings.Count(res.stderr, "\n") != 1 {
					t.Errorf("prepare stderr = %q, want one line naming the disk and the fix", res.stderr)
				}
				f.checkOwners(before)
				f.checkNoEntries()
				return
			}
			f.checkOwners(map[string]string{f.path("img/disk.raw"): qemuOwner})
			if res := run(strings.NewReader(f.domainXML("vm1", transientDisk)), "vm1", "release", "end", "-"); res.code != 0 {
				t.Fatalf("release = %+v", res)
			}
			f.checkOwners(before)
		})
	}
}

// TestCooperativeLiveLabels plays libvirt's DAC driver during a run in
// cooperative mode: it labels files the hook never saw at prepare (a
// hot-plugged disk, an inserted ISO) and leaves them to QEMU or "restores"
// them to root:root. Release must give each its owner from prepare time,
// and leave alone what no record vouches for.
func TestCooperativeLiveLabels(t *testing.T) {
	f := newFixture(t)
	f.writeQEMUConf(fmt.Sprintf("user = \"+%d\"\ngroup = \"+%d\"\ndynamic_ownership = 1\n", qemuID, qemuID))
	f.write("img/hot.raw", "hot", imageUID)
	f.write("img/inserted.iso", "iso", imageUID+1)
	f.write("img/admin.raw", "admin", imageUID)
	before := f.owners()
	xml := f.domainXML("vm1", standardDisks)
	if res := run(strings.NewReader(xml), "vm1", "prepare", "begin", "-"); res.code != 0 {
		t.Fatalf("prepare = %+v", res)
	}
	// During the run, libvirt labels what the live operations bring in.
	chown := func(rel string, uid, gid int) {
		t.Helper()
		if err := os.Chown(f.path(rel), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	chown("img/hot.raw", qemuID, qemuID)       // attach-disk, left to QEMU
	chown("img/inserted.iso", 0, 0)            // change-media, "restored" to root:root
	chown("img/admin.raw", 4242, 4242)         // an administrator's own change
	f.write("img/overlay.qcow2", "new", 0)     // created by libvirt during the run
	chown("img/overlay.qcow2", qemuID, qemuID) // ... and labelled
	if res := run(strings.NewReader(xml), "vm1", "release", "end", "-"); res.code != 0 {
		t.Fatalf("release = %+v", res)
	}
	want := map[string]string{}
	for p, o := range before {
		want[p] = o
	}
	want[f.path("img/admin.raw")] = "4242:4242"
	want[f.path("img/overlay.qcow2")] = qemuOwner // no record vouches for another owner
	f.checkOwners(want)
	f.checkNoEntries()
}
