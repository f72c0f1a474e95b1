//go:build e2e

package e2e

// The host files QEMU opens besides disks: a direct-boot kernel and
// initrd, a unix socket a serial port connects to, a storage pool volume,
// and a pflash NVRAM store. As in parentdir_test.go, each domain is first
// started with the hook switched off and must fail (mustFailWithoutHook).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// multibootKernel is the smallest kernel QEMU's -kernel accepts without a
// Linux header: a multiboot v1 header using the a.out kludge (flags bit 16:
// load and entry addresses in the header, so no ELF is needed), loaded as
// a flat image at 1 MiB, whose entry point halts forever. QEMU refuses a file
// that is neither ("invalid kernel header"), so garbage would not do.
func multibootKernel() []byte {
	const (
		magic    = 0x1BADB002
		flags    = 1 << 16
		loadAddr = 0x100000
		hdrLen   = 32
	)
	var m, fl uint32 = magic, flags
	hdr := []uint32{
		m,
		fl,
		-(m + fl),         // checksum: the three fields sum to 0
		loadAddr,          // header_addr: the header is at the file's start
		loadAddr,          // load_addr
		0,                 // load_end_addr: 0 = the whole file
		0,                 // bss_end_addr: no bss
		loadAddr + hdrLen, // entry_addr: right after the header
	}
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, hdr)
	// cli; 1: hlt; jmp 1b: idles without burning a host CPU under TCG.
	buf.Write([]byte{0xfa, 0xf4, 0xeb, 0xfd})
	return buf.Bytes()
}

// TestDirectKernelBoot: <kernel> and <initrd> owned by alice, 0600; QEMU
// reads both at startup (the initrd as a multiboot module).
func TestDirectKernelBoot(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	alice := f.h.alice.owner()
	kernel := f.file("kernel.mb", multibootKernel(), alice, 0o600)
	initrd := f.file("initrd.img", bytes.Repeat([]byte("initrd\n"), 512), alice, 0o600)
	f.track(kernel, q)
	f.track(initrd, q)

	name := domainPrefix + "kernel"
	spec := domainSpec{Name: name, OS: osSpec{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 dachook=1"}}
	f.mustFailWithoutHook(spec, kernel)
	f.mustStart(spec)
	f.check("running", true, name)
	// The kernel halts; a QEMU that could not load it would have exited by
	// now.
	time.Sleep(300 * time.Millisecond)
	if out, err := virsh(10*time.Second, "domstate", name); err != nil || out != "running" {
		t.Errorf("domstate %s = %q, %v; want running", name, out, err)
		f.h.diagnose(t, name)
	}
	f.destroy(name)
	f.check("after destroy", false, name)
}

// TestSerialUnixConnect: a serial port connects to a socket the test
// listens on, owned by alice with mode 0600, so QEMU can connect only once
// the hook gave it the socket.
func TestSerialUnixConnect(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	sock := filepath.Join(f.dir, "console.sock")
	conns := f.listenUnix(sock, f.h.alice.owner(), 0o600)
	f.track(sock, q)
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("setup: %s is not a socket: %v, %v", sock, fi, err)
	}

	name := domainPrefix + "serial-unix"
	spec := domainSpec{Name: name, Serials: []serial{{Type: "unix", Path: sock}}}
	f.mustFailWithoutHook(spec, sock)
	select {
	case <-conns:
		t.Errorf("control: QEMU connected to %s although the hook was off", sock)
	default:
	}

	f.mustStart(spec)
	f.check("running", true, name)
	var c net.Conn
	select {
	case c = <-conns:
	case <-time.After(15 * time.Second):
		t.Errorf("QEMU of %s did not connect to %s within 15s", name, sock)
		f.h.diagnose(t, name)
	}
	f.destroy(name)
	if c != nil {
		// QEMU is gone: its end of the serial line closes.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("read the serial connection until QEMU closed it: %v", err)
		}
		c.Close()
	}
	f.check("after destroy", false, name)
}

// storagePool defines and starts a persistent dir pool (the hook reads its
// definition from /etc/libvirt/storage/<name>.xml) over dir; cleanup
// destroys and undefines it.
func (f *fixture) storagePool(name, dir string) {
	f.t.Helper()
	xml := fmt.Sprintf("<pool type='dir'>\n  <name>%s</name>\n  <target>\n    <path>%s</path>\n  </target>\n</pool>\n", name, dir)
	xmlPath := filepath.Join(f.dir, name+".pool.xml")
	if err := os.WriteFile(xmlPath, []byte(xml), 0o644); err != nil {
		f.t.Fatalf("write %s: %v", xmlPath, err)
	}
	// libvirtd creates the config directory for the first persistent pool
	// and leaves it behind, empty, when the pool is undefined.
	storageConf := f.host.path("/etc/libvirt/storage")
	_, err := os.Stat(storageConf)
	hadStorageConf := err == nil
	if out, err := virsh(30*time.Second, "pool-define", xmlPath); err != nil {
		f.t.Fatalf("virsh pool-define %s: %v: %s", xmlPath, err, out)
	}
	f.t.Cleanup(func() {
		if out, err := virsh(30*time.Second, "pool-undefine", name); err != nil {
			f.t.Errorf("virsh pool-undefine %s: %v: %s", name, err, out)
		}
		if !hadStorageConf {
			_ = os.Remove(storageConf) // only if empty
		}
	})
	if out, err := virsh(30*time.Second, "pool-start", name); err != nil {
		f.t.Fatalf("virsh pool-start %s: %v: %s", name, err, out)
	}
	f.t.Cleanup(func() {
		if out, err := virsh(30*time.Second, "pool-destroy", name); err != nil {
			f.t.Errorf("virsh pool-destroy %s: %v: %s", name, err, out)
		}
	})
}

// TestPoolVolume: a <disk type='volume'> in a dir pool; the hook finds the
// file through the pool's persistent definition.
func TestPoolVolume(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	alice := f.h.alice.owner()
	poolDir := filepath.Join(f.dir, "pool")
	if err := os.Mkdir(poolDir, 0o755); err != nil {
		t.Fatalf("mkdir %s: %v", poolDir, err)
	}
	setOwner(t, poolDir, owner{0, 0}, 0o755)
	vol := f.image("pool/vol0.qcow2", "qcow2", "16M", "", alice, 0o600)
	f.track(vol, q)
	dirs := f.watchDirs(poolDir)

	pool := domainPrefix + "pool"
	f.storagePool(pool, poolDir)
	if out, err := virsh(10*time.Second, "vol-path", "--pool", pool, "vol0.qcow2"); err != nil || out != vol {
		t.Fatalf("setup: vol-path of vol0.qcow2 in %s = %q, %v; want %s", pool, out, err, vol)
	}
	if _, err := os.Stat(f.host.path("/etc/libvirt/storage/" + pool + ".xml")); err != nil {
		t.Fatalf("setup: pool %s has no persistent definition: %v", pool, err)
	}

	name := domainPrefix + "volume"
	spec := domainSpec{Name: name, Disks: []disk{{Type: "volume", Format: "qcow2", Pool: pool, Volume: "vol0.qcow2", Target: "vda"}}}
	f.mustFailWithoutHook(spec, "Permission denied")
	f.mustStart(spec)
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
	dirs.same("after destroy", name)
}

// ovmf is the host's non-secure-boot UEFI firmware and the template of its
// variable store, as the daemon sees them: Debian 12's ovmf package has
// the 2 MiB OVMF_CODE.fd, Debian 13's only the 4 MiB OVMF_CODE_4M.fd. Both
// pair with their own OVMF_VARS.
func (hs *host) ovmf() (code, vars string) {
	pairs := [][2]string{
		{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
		{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	}
	for _, p := range pairs {
		if _, err := os.Stat(hs.path(p[0])); err == nil {
			return p[0], p[1]
		}
	}
	return pairs[0][0], pairs[0][1]
}

// TestNVRAM: a pflash loader (root's, read-only, under /usr: the hook must
// leave it alone) with a per-VM NVRAM store owned by alice, 0600.
func TestNVRAM(t *testing.T) {
	if e2e == nil {
		t.Skip("e2e harness not set up")
	}
	ovmfCode, ovmfVars := e2e.host.ovmf()
	for _, p := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(e2e.host.path(p)); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing under CI=true: install the ovmf package", p)
			}
			t.Skipf("%s missing (install the ovmf package): %v", p, err)
		}
	}
	f := newFixture(t)
	q := f.h.qemu.owner()
	vars, err := os.ReadFile(f.host.path(ovmfVars))
	if err != nil {
		t.Fatalf("read %s: %v", ovmfVars, err)
	}
	nvram := f.file("vm_VARS.fd", vars, f.h.alice.owner(), 0o600)
	f.track(nvram, q)
	code := f.track(f.host.path(ovmfCode), owner{})
	code.running = code.orig

	name := domainPrefix + "nvram"
	spec := domainSpec{Name: name, OS: osSpec{Loader: ovmfCode, NVRAM: nvram}}
	f.mustFailWithoutHook(spec, nvram)
	f.mustStart(spec)
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}
