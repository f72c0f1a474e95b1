package owner

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParseMount(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Mount
		ok   bool
	}{
		{"optional fields", "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
			Mount{ID: 36, Dev: unix.Mkdev(98, 0), Root: "/mnt1", Point: "/mnt2", FSType: "ext3", Source: "/dev/root"}, true},
		{"escapes", `36 35 98:0 /mnt\0401 /srv/a\040b rw,noatime master:1 - ext3 /dev/root rw`,
			Mount{ID: 36, Dev: unix.Mkdev(98, 0), Root: "/mnt 1", Point: "/srv/a b", FSType: "ext3", Source: "/dev/root"}, true},
		{"escaped backslash", `40 27 8:1 / /a\040b rw - ext4 /dev/sd\134a1 rw`,
			Mount{ID: 40, Dev: unix.Mkdev(8, 1), Root: "/", Point: "/a b", FSType: "ext4", Source: `/dev/sd\a1`}, true},
		{"no source", "40 27 0:5 / /x rw - tmpfs",
			Mount{ID: 40, Dev: unix.Mkdev(0, 5), Root: "/", Point: "/x", FSType: "tmpfs"}, true},
		{"FUSE subtype", "62 27 0:42 / /srv/gluster rw,relatime shared:5 - fuse.glusterfs gl1:/vol rw,user_id=0",
			Mount{ID: 62, Dev: unix.Mkdev(0, 42), Root: "/", Point: "/srv/gluster", FSType: "fuse.glusterfs", Source: "gl1:/vol"}, true},
		{"no separator", "40 27 0:5 / /x rw",
			Mount{ID: 40, Dev: unix.Mkdev(0, 5), Root: "/", Point: "/x"}, true},
		{"not an escape", `1 2 3:4 / /a\9b rw - x y`,
			Mount{ID: 1, Dev: unix.Mkdev(3, 4), Root: "/", Point: `/a\9b`, FSType: "x", Source: "y"}, true},
		{"non-numeric mount id", "x 35 98:0 / / rw - ext4 /dev/root rw", Mount{}, false},
		{"bad device", "1 2 x:y / /m rw - ext4 /dev/a rw", Mount{}, false},
		{"garbage", "garbage", Mount{}, false},
		{"empty", "", Mount{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseMount(tc.line)
			if ok != tc.ok {
				t.Fatalf("ParseMount(%q) ok = %v, want %v", tc.line, ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseMount(%q) (-want +got):\n%s", tc.line, diff)
			}
		})
	}
}

func TestParseMounts(t *testing.T) {
	table := []byte("22 1 0:21 / /proc rw,nosuid - proc proc rw\nnot a mount\n\n61 27 0:41 / /srv/a\\040b rw - fuse /tmp/src rw\n")
	got := ParseMounts(table)
	want := []Mount{
		{ID: 22, Dev: unix.Mkdev(0, 21), Root: "/", Point: "/proc", FSType: "proc", Source: "proc"},
		{ID: 61, Dev: unix.Mkdev(0, 41), Root: "/", Point: "/srv/a b", FSType: "fuse", Source: "/tmp/src"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseMounts (-want +got):\n%s", diff)
	}
}

// FuzzParseMount: the mount table is the kernel's, but mount points come
// from whoever mounted (user namespaces, FUSE); parsing must not panic,
// must stay within the line, and a refused line gives nothing.
func FuzzParseMount(f *testing.F) {
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw")
	f.Add("40 27 8:1 / /a\\040b rw - ext4 /dev/sd\\134a1 rw")
	f.Add("1 2 3:4 5 6 \\")
	f.Add("1 2 3:4 5 \\77 - x \\7")
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := ParseMount(line)
		if !ok && m != (Mount{}) {
			t.Fatalf("ParseMount(%q) = %+v, not ok", line, m)
		}
		for _, s := range []string{m.Root, m.Point, m.FSType, m.Source} {
			if len(s) > len(line) {
				t.Fatalf("ParseMount(%q) grew a field to %q", line, s)
			}
		}
		if strings.Contains(line, "\n") {
			return // a table of several lines, not one
		}
		if ms := ParseMounts([]byte(line)); ok != (len(ms) == 1) || ok && ms[0] != m {
			t.Fatalf("ParseMounts(%q) = %+v, ParseMount = %+v, %v", line, ms, m, ok)
		}
	})
}
