package plan_test

// Attacks with what the kernel itself uses: loop devices, swap files,
// bind mounts and other filesystems. Mount tests run in a private mount
// namespace: the test binary re-executes itself under `unshare -m`, so no
// mount is ever seen by the host.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/plan"
)

const envMountNS = "DACHOOK_TEST_MOUNTNS"

// inMountNS reports whether the test runs in its private mount namespace.
// Called from outside one, it runs the test again in one (and reports its
// result) and returns false; the caller then returns.
func inMountNS(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts in a private mount namespace")
	}
	if os.Getenv(envMountNS) == t.Name() {
		return true
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1)")
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", os.Args[0],
		"-test.run", "^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envMountNS+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a private mount namespace: %v\n%s", t.Name(), err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s did not pass in the private mount namespace:\n%s", t.Name(), out)
	}
	return false
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func bindMount(t *testing.T, src, dst string) {
	t.Helper()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s on %s: %v", src, dst, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dst, unix.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", dst, err)
		}
	})
}

// guard builds and, if that succeeds, prepares and releases the plan for
// xml, checking after each that every path in keep still has the owner it
// had before. It returns Build's error.
func (tr *atkTree) guard(xml string, env plan.Env, keep ...string) error {
	tr.t.Helper()
	before := map[string]string{}
	for _, p := range keep {
		before[p] = atkOwnerOf(tr.t, p)
	}
	check := func(when string) {
		tr.t.Helper()
		for _, p := range keep {
			if got := atkOwnerOf(tr.t, p); got != before[p] {
				tr.t.Errorf("%s is %s after %s, want %s", p, got, when, before[p])
			}
		}
	}
	p, err := plan.Build(tr.parse(xml), env)
	check("plan")
	if err != nil {
		return err
	}
	defer p.Close()
	r := tr.runner()
	if perr := r.Prepare(p); perr != nil {
		tr.t.Logf("Prepare: %v", perr)
	}
	check("prepare")
	if rerr := r.Release("vm", "-"); rerr != nil {
		tr.t.Logf("Release: %v", rerr)
	}
	check("release")
	return nil
}

// expect builds xml as the hook would (guard) and wants it refused saying
// msg, with refused (the file the refusal is about) and keep unchanged, or
// accepted when msg is "". It reports whether a refusal was wanted.
func (tr *atkTree) expect(xml string, env plan.Env, msg, refused string, keep ...string) bool {
	tr.t.Helper()
	if msg != "" {
		keep = append(keep, refused)
	}
	err := tr.guard(xml, env, keep...)
	if msg == "" {
		if err != nil {
			tr.t.Fatalf("Build: %v", err)
		}
		return false
	}
	wantRefusal(tr.t, err, msg)
	return true
}

func wantRefusal(t *testing.T, err error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Build succeeded, want a refusal saying %q", msg)
	}
	if !errors.Is(err, owner.ErrRefused) || !strings.Contains(err.Error(), msg) {
		t.Errorf("Build = %v, want a refusal saying %q", err, msg)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

// losetup attaches a loop device to file and detaches it at cleanup.
func losetup(t *testing.T, file string) string {
	t.Helper()
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("needs losetup")
	}
	out, err := exec.Command("losetup", "-f", "--show", file).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}

func TestAttackLoopBackingFile(t *testing.T) {
	tr := newAtkTree(t)
	backing := filepath.Join(tr.img, "hostfs.img")
	tr.write(backing, strings.Repeat("\x00", 1<<20), atkImage)
	dev := losetup(t, backing)
	t.Run("named by the XML", func(t *testing.T) {
		err := tr.guard(atkDisk("raw", "$ROOT/img/hostfs.img"), tr.env(), backing)
		wantRefusal(t, err, "backing file of loop device "+dev)
	})
	t.Run("named by a header", func(t *testing.T) {
		tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "hostfs.img", "raw", atkImage)
		err := tr.guard(atkDisk("qcow2", "$ROOT/img/top.qcow2"), tr.env(), backing)
		wantRefusal(t, err, "backing file of loop device "+dev)
	})
	t.Run("block device backing another loop device", func(t *testing.T) {
		outer := losetup(t, dev)
		xml := strings.Replace(atkDisk("raw", dev), "<disk type='file' device='disk'>", "<disk type='block' device='disk'>", 1)
		xml = strings.Replace(xml, "<source file=", "<source dev=", 1)
		err := tr.guard(xml, tr.env(), dev)
		wantRefusal(t, err, "backing device of loop device "+outer)
	})
	t.Run("through a symlink", func(t *testing.T) {
		tr.symlink("hostfs.img", filepath.Join(tr.img, "alias.raw"))
		err := tr.guard(atkDisk("raw", "$ROOT/img/alias.raw"), tr.env(), backing)
		wantRefusal(t, err, "backing file of loop device")
	})
}

func TestAttackSwapFile(t *testing.T) {
	tr := newAtkTree(t)
	for _, tool := range []string{"mkswap", "swapon", "swapoff"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	sw := filepath.Join(tr.img, "swap.raw")
	tr.write(sw, strings.Repeat("\x00", 4<<20), atkImage)
	if err := os.Chmod(sw, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "mkswap", sw)
	if out, err := exec.Command("swapon", sw).CombinedOutput(); err != nil {
		t.Skipf("swapon on %s: %v %s", sw, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("swapoff", sw).CombinedOutput(); err != nil {
			t.Errorf("swapoff %s: %v %s", sw, err, out)
		}
	})
	t.Run("named by the XML", func(t *testing.T) {
		wantRefusal(t, tr.guard(atkDisk("raw", "$ROOT/img/swap.raw"), tr.env(), sw), "active swap")
	})
	t.Run("named by a header", func(t *testing.T) {
		tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "swap.raw", "raw", atkImage)
		wantRefusal(t, tr.guard(atkDisk("qcow2", "$ROOT/img/top.qcow2"), tr.env(), sw), "active swap")
	})
}

// TestAttackBindMounts binds protected files and directories below the
// image directory: the path text is harmless, the inode is not.
func TestAttackBindMounts(t *testing.T) {
	if !inMountNS(t) {
		return
	}
	tr := newAtkTree(t)
	tr.mkdir(tr.img)
	t.Run("protected file bound over a disk name", func(t *testing.T) {
		disk := filepath.Join(tr.img, "disk.raw")
		tr.write(disk, "", atkImage)
		bindMount(t, tr.secret, disk)
		wantRefusal(t, tr.guard(atkDisk("raw", "$ROOT/img/disk.raw"), tr.env(), tr.secret), "protected directory "+tr.etc)
	})
	t.Run("protected directory bound below the image directory", func(t *testing.T) {
		dir := filepath.Join(tr.img, "bases")
		tr.mkdir(dir)
		bindMount(t, tr.etc, dir)
		tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "bases/secret", "raw", atkImage)
		wantRefusal(t, tr.guard(atkDisk("qcow2", "$ROOT/img/top.qcow2"), tr.env(), tr.secret), "protected directory "+tr.etc)
		wantRefusal(t, tr.guard(atkDisk("raw", "$ROOT/img/bases/secret"), tr.env(), tr.secret), "protected directory "+tr.etc)
	})
	t.Run("subdirectory of a protected directory bound elsewhere", func(t *testing.T) {
		dir := filepath.Join(tr.img, "sub")
		tr.mkdir(dir)
		bindMount(t, filepath.Join(tr.etc, "sub"), dir)
		wantRefusal(t, tr.guard(atkDisk("raw", "$ROOT/img/sub/x"), tr.env(), filepath.Join(tr.etc, "sub", "x")), "protected directory "+tr.etc)
	})
	t.Run("an unprotected bind mount is fine", func(t *testing.T) {
		src := filepath.Join(tr.root, "elsewhere")
		tr.write(filepath.Join(src, "ok.raw"), "", atkImage)
		dir := filepath.Join(tr.img, "ok")
		tr.mkdir(dir)
		bindMount(t, src, dir)
		p, err := plan.Build(tr.parse(atkDisk("raw", "$ROOT/img/ok/ok.raw")), tr.env())
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		p.Close()
	})
}

// TestAttackOtherFilesystem: the protected directory is on a small ext4
// filesystem without birth times (128-byte inodes), loop-mounted in the
// private namespace, and bound (as a file and as a directory) below the
// image directory on another filesystem.
func TestAttackOtherFilesystem(t *testing.T) {
	if !inMountNS(t) {
		return
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("needs mkfs.ext4")
	}
	tr := newAtkTree(t)
	fsImg := filepath.Join(tr.root, "fs.img")
	if err := os.WriteFile(fsImg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fsImg, 8<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "mkfs.ext4", "-q", "-F", "-I", "128", fsImg)
	dev := losetup(t, fsImg)
	mnt := filepath.Join(tr.root, "mnt")
	tr.mkdir(mnt)
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", dev, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
		}
	})
	etc := filepath.Join(mnt, "etc")
	secret := filepath.Join(etc, "shadow")
	tr.write(secret, "root:x\n", 0)
	env := tr.env()
	env.Policy.Protected = append(env.Policy.Protected, etc)
	tr.mkdir(tr.img)

	disk := filepath.Join(tr.img, "disk.raw")
	tr.write(disk, "", atkImage)
	bindMount(t, secret, disk)
	wantRefusal(t, tr.guard(atkDisk("raw", "$ROOT/img/disk.raw"), env, secret), "protected directory "+etc)

	dir := filepath.Join(tr.img, "b")
	tr.mkdir(dir)
	bindMount(t, etc, dir)
	tr.qcow2(filepath.Join(tr.img, "top.qcow2"), "b/shadow", "raw", atkImage)
	wantRefusal(t, tr.guard(atkDisk("qcow2", "$ROOT/img/top.qcow2"), env, secret), "protected directory "+etc)

	// The image file of a mounted filesystem is a loop backing file.
	wantRefusal(t, tr.guard(atkDisk("raw", "$ROOT/fs.img"), env, fsImg), fmt.Sprintf("backing file of loop device %s", dev))
}
