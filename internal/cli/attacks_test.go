package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/cli"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/inventory"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/coop/remembered"
)

// The attacks on cooperative mode's give-back, each on real files: an
// unprivileged user (userUID) or a careless administrator tries to make
// a release give a file to someone it is not theirs to go to, or to
// keep a file QEMU's. The test process plays libvirt's daemon (see
// startWatcher): its own chowns are libvirt's labels; everyone else's
// run as other processes.

const userUID = 2001 // the unprivileged user

// stormEnv makes the test binary, run again, an unprivileged user's
// chmod storm on the files named after it.
const stormEnv = "LIBVIRT_DAC_HOOK_TEST_CHMOD_STORM"

func TestMain(m *testing.M) {
	if v := os.Getenv(stormEnv); v != "" {
		os.Exit(chmodStorm(v))
	}
	os.Exit(m.Run())
}

// chmodStorm: "ROUNDS:FILE..." chmods every file ROUNDS times.
func chmodStorm(spec string) int {
	parts := strings.Split(spec, ":")
	rounds, _ := strconv.Atoi(parts[0])
	for i := range rounds {
		for _, p := range parts[1:] {
			if err := unix.Chmod(p, uint32(0o600|(i&1)*0o040)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	return 0
}

// coopRig is a cooperative domain vm1 whose live operations bring files
// from the fixture's pool/ directory, with a watcher running.
func coopRig(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture(t)
	if err := os.MkdirAll(f.path("pool"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cli.SetLiveDirs([]string{f.path("pool")}))
	t.Cleanup(setRunDir(f.path("run"))) // no QEMU of the host's libvirt counts
	f.startWatcher()
	return f, f.prepareCooperative()
}

func (f *fixture) release(xml string) {
	f.t.Helper()
	if res := run(strings.NewReader(xml), "vm1", "release", "end", "-"); res.code != 0 {
		f.t.Fatalf("release = %+v", res)
	}
}

// as runs a command as another process would: an administrator's shell.
func (f *fixture) as(args ...string) {
	f.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		f.t.Fatalf("%v: %v %s", args, err, out)
	}
}

func owned(uid int) string { return fmt.Sprintf("%d:%d", uid, uid) }

// Attack 1: on a filesystem without birth times, a user's hot-plugged
// file is deleted and root's new 0600 file gets its inode number at the
// same path. Release must not give root's file to the user: the record
// is a file handle with the inode's generation.
func TestAttackInodeReuseWithoutBirthTime(t *testing.T) {
	f := newFixture(t)
	pool := f.path("pool")
	mountNoBirth(t, f.path("pool.img"), pool)
	t.Cleanup(cli.SetLiveDirs([]string{pool}))
	t.Cleanup(setRunDir(f.path("run")))
	f.startWatcher()
	xml := f.prepareCooperative()
	f.write("pool/hot.img", "user's disk", userUID)
	f.sync("vm1")
	f.labelled("pool/hot.img", qemuID, qemuID) // attach-disk
	ino := inoOf(t, f.path("pool/hot.img"))
	if err := os.Remove(f.path("pool/hot.img")); err != nil {
		t.Fatal(err)
	}
	// root's new secret, at the same path, on the same inode number.
	reused := false
	for i := 0; i < 64 && !reused; i++ {
		fd, err := unix.Open(f.path("pool/hot.img"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_ = unix.Close(fd)
		if reused = inoOf(t, f.path("pool/hot.img")) == ino; !reused {
			if err := os.Rename(f.path("pool/hot.img"), f.path(fmt.Sprintf("pool/other%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !reused {
		t.Fatalf("setup: inode %d was not reused", ino)
	}
	f.release(xml)
	if got := ownerOf(t, f.path("pool/hot.img")); got != "0:0" {
		t.Errorf("root's new file on the reused inode = %s after release, want 0:0", got)
	}
}

// mountNoBirth mounts a fresh ext4 with 128-byte inodes (no room for a
// creation time) at dir until the test ends.
func mountNoBirth(t *testing.T, img, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("truncate", "-s", "32M", img).CombinedOutput(); err != nil {
		t.Fatalf("truncate: %v %s", err, out)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-I", "128", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(dir, ".probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, probe, 0, unix.STATX_BTIME, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mask&unix.STATX_BTIME != 0 {
		t.Fatalf("setup: %s keeps birth times", dir)
	}
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
}

func inoOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// Attack 2: an administrator gives a user's upload to QEMU's user on
// purpose while a domain runs; that domain's release leaves it so.
func TestAttackAdminChownKept(t *testing.T) {
	f, xml := coopRig(t)
	f.write("pool/upload.img", "upload", userUID)
	f.sync("vm1")
	f.as("chown", qemuOwner, f.path("pool/upload.img"))
	f.release(xml)
	f.checkOwners(map[string]string{f.path("pool/upload.img"): qemuOwner})
}

// Attack 3: root's cp -a of a hot-plugged image carries libvirt's
// remember_owner xattrs with this boot's stamp; the clone is root's
// copy, never given to the original's owner.
func TestAttackCopyCarriesXattrs(t *testing.T) {
	f, xml := coopRig(t)
	f.write("pool/hot.img", "hot", userUID)
	f.sync("vm1")
	hot := f.path("pool/hot.img")
	// libvirt's label, remember_owner = 1: the xattrs first, then chown.
	for k, v := range map[string]string{
		remembered.XattrDAC:       "+" + strconv.Itoa(userUID) + ":+" + strconv.Itoa(userUID),
		remembered.XattrRefDAC:    "1",
		remembered.XattrTimestamp: strconv.FormatInt(remembered.BootTime(), 10),
	} {
		if err := unix.Setxattr(hot, k, []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	f.labelled("pool/hot.img", qemuID, qemuID)
	f.as("cp", "-a", hot, f.path("pool/clone.img"))
	f.release(xml)
	f.checkOwners(map[string]string{
		hot:                      owned(userUID),
		f.path("pool/clone.img"): qemuOwner,
	})
}

// Attack 4: a user's own sleep named qemu-system-x86_64 holds a
// victim's hot-plugged ISO open; the victim's release still gives the
// ISO back: QEMU processes are the ones libvirt's run directory names.
func TestAttackFakeQEMU(t *testing.T) {
	f, xml := coopRig(t)
	f.write("pool/victim.iso", "iso", imageUID+7)
	f.sync("vm1")
	f.labelled("pool/victim.iso", qemuID, qemuID) // change-media
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	fake := f.path("qemu-system-x86_64")
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	iso, err := os.Open(f.path("pool/victim.iso"))
	if err != nil {
		t.Fatal(err)
	}
	defer iso.Close()
	c := exec.Command(fake, "600")
	c.ExtraFiles = []*os.File{iso}
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: userUID, Gid: userUID}}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	f.release(xml)
	f.checkOwners(map[string]string{f.path("pool/victim.iso"): owned(imageUID + 7)})
}

// Attack 5: a user chmods their own files in a watched directory as
// fast as they can while five victims' ISOs are hot-plugged; every ISO
// is given back (no event is lost, nothing known is forgotten).
func TestAttackEventFlood(t *testing.T) {
	f, xml := coopRig(t)
	var mine []string
	for i := range 100 {
		rel := fmt.Sprintf("pool/mine%03d.img", i)
		f.write(rel, "", userUID)
		mine = append(mine, f.path(rel))
	}
	want := map[string]string{}
	for i := range 5 {
		rel := fmt.Sprintf("pool/victim%d.iso", i)
		f.write(rel, "iso", imageUID+10+i)
		want[f.path(rel)] = owned(imageUID + 10 + i)
	}
	f.sync("vm1")
	exe := f.path("storm") // the test binary, where the user may run it
	if b, err := os.ReadFile(os.Args[0]); err != nil || os.WriteFile(exe, b, 0o755) != nil {
		t.Fatalf("copy the test binary: %v", err)
	}
	storm := exec.Command(exe)
	storm.Env = append(os.Environ(), stormEnv+"=2000:"+strings.Join(mine, ":"))
	storm.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: userUID, Gid: userUID}}
	if err := storm.Start(); err != nil {
		t.Fatal(err)
	}
	for p := range want {
		if err := os.Chown(p, qemuID, qemuID); err != nil { // hot-plugged meanwhile
			t.Fatal(err)
		}
	}
	if err := storm.Wait(); err != nil {
		t.Fatalf("chmod storm: %v", err)
	}
	f.release(xml)
	f.checkOwners(want)
}

// Attack 6: a crash left one domain's record empty; boot still gives
// back what every other record vouches for, and names the damaged one.
func TestAttackCrashEmptiedRecord(t *testing.T) {
	f := newFixture(t)
	f.write("img/hot.iso", "iso", imageUID+4)
	hot := f.path("img/hot.iso")
	l := &inventory.Labelled{Files: []inventory.File{labelledFile(t, hot)}}
	if err := os.Chown(hot, qemuID, qemuID); err != nil { // libvirt's label in that run
		t.Fatal(err)
	}
	for _, d := range []string{"vm0", "vm1", "vm2"} {
		if err := inventory.Save(f.state, inventory.New(d, "an-earlier-boot", qemuID, qemuID, []string{f.path("img")})); err != nil {
			t.Fatal(err)
		}
	}
	if err := inventory.SaveLabelled(f.state, l); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"vm0", "vm2"} { // cut short by the crash
		if err := os.WriteFile(filepath.Join(f.state, "inventory", inventory.NameOf(d)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res := run(noRead{t}, "boot")
	f.checkOwners(map[string]string{hot: owned(imageUID + 4)})
	if !strings.Contains(res.stderr, inventory.NameOf("vm0")) {
		t.Errorf("boot stderr = %q, want the damaged record named", res.stderr)
	}
}

// Attacks 7 and 8: odd domain names. Names libvirt accepts (any UTF-8
// but '/' and control characters, 200 bytes and more) get a record that
// is written and read back, and what libvirt labelled during the run is
// given back; restore --stale of the other domains is not stopped by
// them. A name that is not UTF-8 cannot come from libvirt (its XML is
// UTF-8, so such a call has no <name>): prepare refuses it with one line,
// writes no record and changes nothing.
func TestAttackOddDomainNames(t *testing.T) {
	t.Run("invalid UTF-8", func(t *testing.T) {
		f := newFixture(t)
		domain := "vm-\xff\xfe"
		xml := strings.Replace(f.domainXML(domain, standardDisks), "  <name>"+domain+"</name>\n", "", 1)
		before := f.owners()
		if res := run(strings.NewReader(xml), domain, "prepare", "begin", "-"); res.code != cli.ExitInput || strings.Count(res.stderr, "\n") != 1 {
			t.Fatalf("prepare = %+v, want exit %d and one line", res, cli.ExitInput)
		}
		if r, err := inventory.Load(f.state, domain); r != nil || err != nil {
			t.Errorf("record of %q = %+v, %v; want none", domain, r, err)
		}
		f.checkOwners(before)
		if res := run(noRead{t}, "restore", "--stale"); res.code != 0 {
			t.Errorf("restore --stale = %+v", res)
		}
	})
	for _, tc := range []struct{ name, domain string }{
		{"non-ASCII", "vm-\u00e9\u2713"},
		{"200 bytes", strings.Repeat("a", 200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if err := os.MkdirAll(f.path("pool"), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cli.SetLiveDirs([]string{f.path("pool")}))
			t.Cleanup(setRunDir(f.path("run")))
			f.startWatcher()
			f.write("pool/hot.img", "hot", userUID)
			xml := f.domainXML(tc.domain, standardDisks)
			if res := run(strings.NewReader(xml), tc.domain, "prepare", "begin", "-"); res.code != 0 {
				t.Fatalf("prepare = %+v", res)
			}
			r, err := inventory.Load(f.state, tc.domain)
			if err != nil || r == nil || r.Domain != tc.domain {
				t.Fatalf("record of %q = %+v, %v", tc.domain, r, err)
			}
			if err := os.Chown(f.path("pool/hot.img"), qemuID, qemuID); err != nil {
				t.Fatal(err)
			}
			f.sync(tc.domain)
			if res := run(noRead{t}, "restore", "--stale"); res.code != 0 {
				t.Errorf("restore --stale with the domain running = %+v", res)
			}
			if res := run(strings.NewReader(xml), tc.domain, "release", "end", "-"); res.code != 0 {
				t.Fatalf("release = %+v", res)
			}
			f.checkOwners(map[string]string{f.path("pool/hot.img"): owned(userUID)})
		})
	}
}
