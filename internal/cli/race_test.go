package cli_test

import (
	"encoding/binary"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The attacker of TestHeaderRewriteRace runs as this helper, in its own
// process with the image owner's uid: a Go program cannot switch the uid
// of one goroutine.
func TestHelperHeaderRewriter(t *testing.T) {
	path := os.Getenv("DACHOOK_REWRITE_IMAGE")
	if path == "" {
		t.Skip("helper process of TestHeaderRewriteRace")
	}
	good, evil := os.Getenv("DACHOOK_REWRITE_GOOD"), os.Getenv("DACHOOK_REWRITE_EVIL")
	write := func(f *os.File, name string) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(name)))
		_, _ = f.WriteAt(n[:], 16)
		_, _ = f.WriteAt(append([]byte(name), make([]byte, 64)...), 1024)
	}
	for i := 0; ; i++ {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		// Keep the descriptor a while, as an owner who opened the image
		// before the check would, then forge the header through it.
		time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
		write(f, evil)
		time.Sleep(300 * time.Microsecond)
		write(f, good)
		_ = f.Close()
		time.Sleep(time.Duration(i%5) * 400 * time.Microsecond)
	}
}

// TestHeaderRewriteRace races a real prepare against the image's owner
// rewriting its backing file name through a descriptor opened before the
// check. libvirt reads the header after prepare; so a prepare that
// succeeds must leave a header nobody but root and QEMU can change: over
// many rounds, the header is never found forged after a successful
// prepare, and the protected file the forged header names never changes
// owner.
func TestHeaderRewriteRace(t *testing.T) {
	f := newFixture(t)
	f.writeQEMUConf("user = \"+64055\"\ngroup = \"+64055\"\ndynamic_ownership = 1\n")
	f.qcow2("img/top.qcow2", "base.raw", "raw", imageUID)
	if err := os.Chmod(f.path("img/top.qcow2"), 0o600); err != nil {
		t.Fatal(err)
	}
	evil := f.path("etc/secret")
	secretOwner := ownerOf(t, evil)
	// The test binary's own directory is root's 0700 build directory.
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := f.path("rewriter.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	attacker := exec.Command(exe, "-test.run=^TestHelperHeaderRewriter$", "-test.timeout=10m")
	attacker.Env = append(os.Environ(), "DACHOOK_REWRITE_IMAGE="+f.path("img/top.qcow2"), "DACHOOK_REWRITE_GOOD=base.raw", "DACHOOK_REWRITE_EVIL="+evil)
	attacker.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: imageUID, Gid: imageUID}}
	if err := attacker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = attacker.Process.Kill(); _ = attacker.Wait() }()

	xml := f.domainXML("vm1", `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$ROOT/img/top.qcow2'/><target dev='vda' bus='virtio'/></disk>`)
	var ok, refused, forgedAtCheck, torn int
	for round := 0; round < 150; round++ {
		res := run(strings.NewReader(xml), "vm1", "prepare", "begin", "-")
		switch {
		case res.code == 0:
			ok++
			// libvirt would probe the chain now: give the attacker time
			// to try, then look at what it would read.
			deadline := time.Now().Add(3 * time.Millisecond)
			for time.Now().Before(deadline) {
				b, err := os.ReadFile(f.path("img/top.qcow2"))
				if err != nil {
					t.Fatal(err)
				}
				n := binary.BigEndian.Uint32(b[16:])
				if n > 512 || string(b[1024:1024+n]) != "base.raw" {
					t.Fatalf("round %d: after a successful prepare the header names %q: libvirt would follow it", round, b[1024:1024+min(n, 512)])
				}
			}
		case strings.Contains(res.stderr, "open for writing"):
			refused++
		case strings.Contains(res.stderr, "etc/secret"):
			forgedAtCheck++ // the plan read the forged header and refused it
		case res.code == 1 && strings.Count(res.stderr, "\n") == 1:
			torn++ // read half a rewrite: names a file that is not there
		default:
			t.Fatalf("round %d: prepare = exit %d, stderr %q", round, res.code, res.stderr)
		}
		if res := run(strings.NewReader(xml), "vm1", "release", "end", "-"); res.code != 0 {
			t.Fatalf("round %d: release = %+v", round, res)
		}
		if got := ownerOf(t, evil); got != secretOwner {
			t.Fatalf("round %d: %s is owned by %s, want %s", round, evil, got, secretOwner)
		}
	}
	t.Logf("150 rounds: %d prepares succeeded, %d refused a writer, %d read the forged header and refused it, %d read a torn header and failed", ok, refused, forgedAtCheck, torn)
	if ok == 0 {
		t.Errorf("no prepare succeeded in 150 rounds: the race never left a window to check")
	}
}
