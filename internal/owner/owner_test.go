package owner

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown and mknod are done for real")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func owner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// tree makes a temp tree with a "protected" dir holding a secret file.
func tree(t *testing.T) (root, protected, secret string) {
	t.Helper()
	root = t.TempDir()
	protected = filepath.Join(root, "etc")
	if err := os.Mkdir(protected, 0o755); err != nil {
		t.Fatal(err)
	}
	secret = filepath.Join(protected, "shadow")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return root, protected, secret
}

func TestOpenChownThroughHandle(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	img := filepath.Join(root, "a.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link.img")
	if err := os.Symlink("a.img", link); err != nil {
		t.Fatal(err)
	}
	h, err := Open(link)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Path != img {
		t.Errorf("Open(%s).Path = %s, want the final target %s", link, h.Path, img)
	}
	if err := h.Chown(1234, 5678); err != nil {
		t.Fatal(err)
	}
	if u, g := owner(t, img); u != 1234 || g != 5678 {
		t.Errorf("owner of %s = %d:%d, want 1234:5678", img, u, g)
	}
	if u, _ := owner(t, link); u != 0 {
		t.Errorf("the symlink itself was chowned to %d", u)
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open(missing) = %v, want ErrNotExist", err)
	}
	if _, err := Open("relative/path"); err == nil {
		t.Fatal("Open(relative) succeeded")
	}
}

func TestPolicyCheck(t *testing.T) {
	needRoot(t)
	root, protected, secret := tree(t)
	pol := Policy{Protected: []string{protected}}
	mk := func(name string, f func(p string) error) string {
		p := filepath.Join(root, name)
		if err := f(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := mk("plain.img", func(p string) error { return os.WriteFile(p, nil, 0o600) })
	toSecret := mk("evil.img", func(p string) error { return os.Symlink(secret, p) })
	hard := mk("hard.img", func(p string) error { return os.Link(secret, p) })
	dirLink := mk("evil-dir", func(p string) error { return os.Symlink(protected, p) })
	null := mk("null", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))) })
	usb := mk("usb", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(189, 5))) })
	tty := mk("tty1", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(4, 1))) })
	ttyS := mk("ttyS0", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(4, 64))) })
	blk := mk("loop", func(p string) error { return unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))) })
	sub := mk("dir", func(p string) error { return os.Mkdir(p, 0o755) })

	disk := Want{Types: domain.TypeRegular | domain.TypeBlock}
	tests := []struct {
		name   string
		path   string
		want   Want
		pol    Policy
		refuse bool
	}{
		{"plain file", plain, disk, pol, false},
		{"symlink to protected file", toSecret, disk, pol, true},
		{"hardlink to protected file", hard, disk, pol, true},
		{"hardlink allowed by config but still protected inode? no: path is outside", hard, disk, Policy{Protected: []string{protected}, AllowHardlinks: true}, false},
		{"file through symlinked dir", filepath.Join(dirLink, "shadow"), disk, pol, true},
		{"protected dir itself", protected, Want{Types: domain.TypeDir}, pol, true},
		{"dev null as disk", null, disk, pol, true},
		{"dev null as chardev", null, Want{Types: domain.TypeChar, Kind: domain.KindChardevDev}, pol, true},
		{"virtual console as chardev", tty, Want{Types: domain.TypeChar, Kind: domain.KindChardevDev}, pol, true},
		{"serial port as chardev", ttyS, Want{Types: domain.TypeChar, Kind: domain.KindChardevDev}, pol, false},
		{"serial port as usb", ttyS, Want{Types: domain.TypeChar, Kind: domain.KindUSB}, pol, true},
		{"usb node right number", usb, Want{Types: domain.TypeChar, Kind: domain.KindUSB, Rdev: unix.Mkdev(189, 5)}, pol, false},
		{"usb node wrong number", usb, Want{Types: domain.TypeChar, Kind: domain.KindUSB, Rdev: unix.Mkdev(189, 6)}, pol, true},
		{"usb node as a kind without char devices", usb, Want{Types: domain.TypeChar, Kind: domain.KindDisk}, pol, true},
		{"usb node as disk", usb, disk, pol, true},
		{"block device as disk", blk, disk, pol, false},
		{"block device as usb", blk, Want{Types: domain.TypeChar}, pol, true},
		{"directory as disk", sub, disk, pol, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Open(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			err = tc.pol.Check(h, tc.want)
			if tc.refuse && !errors.Is(err, ErrRefused) {
				t.Errorf("Check(%s) = %v, want refusal", tc.path, err)
			}
			if !tc.refuse && err != nil {
				t.Errorf("Check(%s) = %v, want nil", tc.path, err)
			}
		})
	}
}

// TestSymlinkSwapRace swaps an image name between a real image and a
// symlink to a protected file while the hook-like loop opens, checks and
// chowns it. Whatever the interleaving, the protected file keeps its owner.
func TestSymlinkSwapRace(t *testing.T) {
	needRoot(t)
	root, protected, secret := tree(t)
	pol := Policy{Protected: []string{protected}}
	good := filepath.Join(root, "good.img")
	if err := os.WriteFile(good, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(root, "vm.img")
	evil := filepath.Join(root, "evil.tmp")
	benign := filepath.Join(root, "benign.tmp")
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	// The attackers' calls race each other and the code under test, so
	// they fail now and then by design; a goroutine cannot t.Fatal anyway.
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			os.Remove(evil)
			os.Remove(benign)
			_ = os.Symlink(secret, evil)
			_ = os.Symlink(good, benign)
			if i%2 == 0 {
				_ = os.Rename(evil, name)
			} else {
				_ = os.Rename(benign, name)
			}
		}
	}()
	// A directory component swapped too: dir is a real dir or a symlink to
	// the protected dir.
	dirName := filepath.Join(root, "images")
	realDir := filepath.Join(root, "real-images")
	must(t, os.Mkdir(realDir, 0o755))
	must(t, os.WriteFile(filepath.Join(realDir, "shadow"), nil, 0o600))
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			tmp := filepath.Join(root, "images.tmp")
			os.Remove(tmp)
			if i%2 == 0 {
				_ = os.Symlink(protected, tmp)
			} else {
				_ = os.Symlink(realDir, tmp)
			}
			_ = os.Rename(tmp, dirName)
		}
	}()
	chowned := 0
	for i := 0; i < 3000; i++ {
		for _, p := range []string{name, filepath.Join(dirName, "shadow")} {
			h, err := Open(p)
			if err != nil {
				continue
			}
			if pol.Check(h, Want{Types: domain.TypeRegular}) == nil {
				if err := h.Chown(4321, 4321); err == nil {
					chowned++
				}
			}
			h.Close()
		}
	}
	stop.Store(true)
	wg.Wait()
	if u, g := owner(t, secret); u != 0 || g != 0 {
		t.Fatalf("protected file %s now owned by %d:%d", secret, u, g)
	}
	if chowned == 0 {
		t.Fatal("no legitimate chown happened: the race loop tested nothing")
	}
	t.Logf("%d legitimate chowns, protected file untouched", chowned)
}

func TestOpenFileReopensSameInode(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "img")
	must(t, os.WriteFile(p, []byte("QFI\xfb"), 0o600))
	h, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// Replace the name: the handle still reads the original inode.
	must(t, os.Rename(p, p+".old"))
	must(t, os.WriteFile(p, []byte("other"), 0o600))
	f, err := h.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if string(b) != "QFI\xfb" {
		t.Errorf("OpenFile read %q, want the inode opened first", b)
	}
}

func TestOpenWalkFallback(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "a")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := walkOpen(p, false)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	l := filepath.Join(root, "l")
	if err := os.Symlink(p, l); err != nil {
		t.Fatal(err)
	}
	if _, err := walkOpen(l, false); !errors.Is(err, unix.ELOOP) {
		t.Errorf("walkOpen(symlink) = %v, want ELOOP", err)
	}
}
