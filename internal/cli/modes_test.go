package cli_test

import (
	"fmt"
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
