package owner

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

// mkTree builds a tree under root from "path" → spec: "dir", "file", or
// "-> target" for a symlink.
func mkTree(t *testing.T, root string, spec [][2]string) {
	t.Helper()
	for _, e := range spec {
		p := filepath.Join(root, e[0])
		var err error
		switch {
		case e[1] == "dir":
			err = os.MkdirAll(p, 0o755)
		case e[1] == "file":
			err = os.WriteFile(p, []byte(e[0]), 0o644)
		case strings.HasPrefix(e[1], "-> "):
			err = os.Symlink(strings.ReplaceAll(strings.TrimPrefix(e[1], "-> "), "$ROOT", root), p)
		default:
			t.Fatalf("bad spec %q", e[1])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func sameInode(t *testing.T, a, b string) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		t.Fatalf("stat %s: %v", a, err)
	}
	if err := unix.Lstat(b, &sb); err != nil {
		t.Fatalf("lstat %s: %v", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// TestResolveLikeKernel checks that resolve reaches the inode the kernel
// reaches for the same path (stat(2)), names it without symlinks, and
// agrees with `readlink -f` where that is installed.
func TestResolveLikeKernel(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, [][2]string{
		{"a/b/c", "dir"},
		{"a/b/c/f", "file"},
		{"a/b/g", "file"},
		{"x/y", "dir"},
		{"x/g", "file"},
		{"a/rel", "-> b/c"},              // relative, down
		{"a/b/c/up", "-> ../g"},          // relative, up
		{"a/abs", "-> $ROOT/x/y"},        // absolute
		{"a/chain", "-> rel"},            // link to link
		{"a/b/c/self", "-> ."},           // link to its own dir
		{"a/dotdot", "-> ../x/y/../g"},   // ".." inside the target
		{"x/y/toA", "-> ../../a/b/c/up"}, // chain across dirs
		{"a/slash", "-> b/c/"},           // target with a trailing slash
	})
	readlinkF, _ := exec.LookPath("readlink")
	tests := []struct {
		name, path string
		links      int
	}{
		{"no links", "a/b/c/f", 0},
		{"relative link", "a/rel/f", 1},
		{"dotdot after relative link is the target's parent", "a/rel/../g", 1},
		{"dotdot after absolute link is the target's parent", "a/abs/../g", 1},
		{"relative link up", "a/b/c/up", 1},
		{"chain", "a/chain/f", 2},
		{"chain then dotdot", "a/chain/../../../x/g", 2},
		{"self link", "a/b/c/self/self/f", 2},
		{"dotdot inside a target", "a/dotdot", 1},
		{"chain across dirs", "x/y/toA", 2},
		{"dot and double slashes", "a//./b/./c//f", 0},
		{"dotdot past root", "../../../../../../../../.." + root + "/a/b/g", 0},
		{"target with trailing slash", "a/slash/f", 1},
		{"final dir", "a/rel", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := root + "/" + tc.path
			if strings.HasPrefix(tc.path, "../") {
				p = "/" + tc.path
			}
			got, links, err := resolve(p)
			if err != nil {
				t.Fatalf("resolve(%s) = %v", p, err)
			}
			if !sameInode(t, p, got) {
				t.Errorf("resolve(%s) = %s, not the inode stat(2) reaches", p, got)
			}
			if got != filepath.Clean(got) || !filepath.IsAbs(got) {
				t.Errorf("resolve(%s) = %s, not absolute and clean", p, got)
			}
			if ev, err := filepath.EvalSymlinks(got); err != nil || ev != got {
				t.Errorf("resolve(%s) = %s, which still holds a symlink (EvalSymlinks: %s, %v)", p, got, ev, err)
			}
			if len(links) != tc.links {
				t.Errorf("resolve(%s) followed %d links (%+v), want %d", p, len(links), links, tc.links)
			}
			if readlinkF != "" {
				out, err := exec.Command(readlinkF, "-f", p).Output()
				if err != nil {
					t.Fatalf("readlink -f %s: %v", p, err)
				}
				if want := strings.TrimSuffix(string(out), "\n"); got != want {
					t.Errorf("resolve(%s) = %s, readlink -f says %s", p, got, want)
				}
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, [][2]string{
		{"f", "file"},
		{"dangling", "-> nowhere"},
		{"loop1", "-> loop2"},
		{"loop2", "-> loop1"},
		{"tofile", "-> f"},
	})
	tests := []struct {
		name, path string
		want       error
	}{
		{"dangling", "dangling", fs.ErrNotExist},
		{"missing dir", "nodir/x", fs.ErrNotExist},
		{"loop", "loop1", unix.ELOOP},
		{"file as dir", "f/x", unix.ENOTDIR},
		{"dotdot after file", "f/..", unix.ENOTDIR},
		{"trailing slash on file", "f/", unix.ENOTDIR},
		{"trailing slash on link to file", "tofile/", unix.ENOTDIR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := root + "/" + tc.path
			// The kernel must agree, or the test is wrong.
			var st unix.Stat_t
			if kerr := unix.Stat(p, &st); !errors.Is(kerr, tc.want) {
				t.Fatalf("stat(%s) = %v, the test expects %v", p, kerr, tc.want)
			}
			h, err := Open(p)
			if err == nil {
				h.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Open(%s) = %v, want %v", p, err, tc.want)
			}
		})
	}
}

// TestResolveMaxLinks: the kernel follows at most 40 symlinks in one
// resolution; so does Open.
func TestResolveMaxLinks(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "l0"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= maxLinks+1; i++ {
		if err := os.Symlink("l"+strconv.Itoa(i-1), filepath.Join(root, "l"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	ok := filepath.Join(root, "l"+strconv.Itoa(maxLinks))
	h, err := Open(ok)
	if err != nil {
		t.Fatalf("Open through %d links = %v, want success like stat(2)", maxLinks, err)
	}
	if len(h.Links) != maxLinks {
		t.Errorf("Open recorded %d links, want %d", len(h.Links), maxLinks)
	}
	h.Close()

	tooMany := filepath.Join(root, "l"+strconv.Itoa(maxLinks+1))
	var st unix.Stat_t
	if err := unix.Stat(tooMany, &st); !errors.Is(err, unix.ELOOP) {
		t.Fatalf("stat through %d links = %v; the kernel's limit is not what the test assumes", maxLinks+1, err)
	}
	if h, err := Open(tooMany); !errors.Is(err, unix.ELOOP) {
		if err == nil {
			h.Close()
		}
		t.Errorf("Open through %d links = %v, want ELOOP", maxLinks+1, err)
	}
}

func TestOpenRecordsLinks(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	mkTree(t, root, [][2]string{
		{"d", "dir"},
		{"d/f", "file"},
		{"dirlink", "-> d"},
		{"d/flink", "-> f"},
	})
	if err := unix.Lchown(filepath.Join(root, "d/flink"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	h, err := Open(filepath.Join(root, "dirlink/flink"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := []Link{
		{Path: filepath.Join(root, "dirlink"), Target: "d", UID: 0},
		{Path: filepath.Join(root, "d/flink"), Target: "f", UID: 1000},
	}
	if len(h.Links) != len(want) {
		t.Fatalf("Links = %+v, want %+v", h.Links, want)
	}
	for i := range want {
		if h.Links[i] != want[i] {
			t.Errorf("Links[%d] = %+v, want %+v", i, h.Links[i], want[i])
		}
	}
	if h.Path != filepath.Join(root, "d/f") {
		t.Errorf("Path = %s, want %s", h.Path, filepath.Join(root, "d/f"))
	}
}

// TestSymlinkOwnership is the fs.protected_symlinks rule: a link may lead
// only to its owner's files, unless root made it.
func TestSymlinkOwnership(t *testing.T) {
	needRoot(t)
	const user, other = 1000, 1001
	root := t.TempDir()
	mkTree(t, root, [][2]string{
		{"root-file", "file"},
		{"user-file", "file"},
		{"userdir", "dir"},
		{"userdir/f", "file"},
		{"user-to-root", "-> root-file"},
		{"user-to-user", "-> user-file"},
		{"root-to-root", "-> root-file"},
		{"root-to-user", "-> user-file"},
		{"other-to-user", "-> user-file"},
		{"chain-root-then-user", "-> user-to-root"},
		{"chain-user-then-other", "-> other-to-user"},
		{"user-dirlink", "-> userdir"},
		{"user-to-blk", "-> blk"},
	})
	blk := filepath.Join(root, "blk")
	if err := unix.Mknod(blk, unix.S_IFBLK|0o600, int(unix.Mkdev(240, 77))); err != nil {
		t.Fatal(err)
	}
	chown := func(name string, uid int) {
		t.Helper()
		if err := unix.Lchown(filepath.Join(root, name), uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	chown("user-file", user)
	chown("user-to-root", user)
	chown("user-to-user", user)
	chown("other-to-user", other)
	chown("chain-user-then-other", user)
	chown("user-dirlink", user)
	chown("user-to-blk", user)

	pol := Policy{ProcRoot: fakeProc(t, "", ""), SysRoot: t.TempDir()}
	reg := Want{Types: domain.TypeRegular}
	tests := []struct {
		name   string
		path   string
		want   Want
		refuse string // substring of the refusal; "" for allowed
	}{
		{"user link to root's file", "user-to-root", reg, "symlink " + root + "/user-to-root (-> root-file) is owned by uid 1000, but leads to " + root + "/root-file, owned by uid 0"},
		{"user link to user's file", "user-to-user", reg, ""},
		{"root link to root's file", "root-to-root", reg, ""},
		{"root link to user's file", "root-to-user", reg, ""},
		{"other user's link to user's file", "other-to-user", reg, "owned by uid 1001"},
		{"other user's link trusted by the caller", "other-to-user", Want{Types: domain.TypeRegular, LinkOwners: []uint32{other}}, ""},
		{"root link then user link to root's file", "chain-root-then-user", reg, "symlink " + root + "/user-to-root "},
		{"user link then other's link", "chain-user-then-other", reg, "symlink " + root + "/other-to-user "},
		{"user's dir link to root's file in it", "user-dirlink/f", reg, "symlink " + root + "/user-dirlink "},
		{"user link to a root block device", "user-to-blk", Want{Types: domain.TypeBlock}, "owned by uid 1000, but leads to " + blk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Open(filepath.Join(root, tc.path))
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			err = pol.Check(h, tc.want)
			if tc.refuse == "" {
				if err != nil {
					t.Errorf("Check(%s) = %v, want nil", tc.path, err)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.refuse) {
				t.Errorf("Check(%s) = %v, want refusal containing %q", tc.path, err, tc.refuse)
			}
		})
	}
}

func TestWalkOpenFinalLink(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, [][2]string{{"d", "dir"}, {"d/f", "file"}, {"l", "-> d/f"}, {"dl", "-> d"}})
	fd, err := walkOpen(filepath.Join(root, "l"), true)
	if err != nil {
		t.Fatalf("walkOpen(symlink, finalLink) = %v", err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	unix.Close(fd)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("walkOpen(symlink, finalLink) holds mode %o (%v), want the symlink itself", st.Mode, err)
	}
	if _, err := walkOpen(filepath.Join(root, "dl", "f"), true); !errors.Is(err, unix.ELOOP) {
		t.Errorf("walkOpen(through a symlinked dir) = %v, want ELOOP", err)
	}
}
