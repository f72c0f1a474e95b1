package main

// End-to-end scenarios for directories and other host files: images under a 0700 directory
// (the hook grants QEMU search permission with one ACL entry and takes
// exactly that back), and the host files QEMU opens besides disks: a
// direct-boot kernel and initrd, a unix socket a serial port connects to,
// a storage pool volume, and a pflash NVRAM store.
//
// Every scenario first starts its domain with <seclabel type='none'
// model='dac'/>, which tells the hook to change nothing: that start must
// fail, or the scenario would pass even if the hook did nothing. Then the
// domain is started for real and the files are checked while it runs and
// after it is gone. Domains use testdata/e2e/domain-more.xml.tmpl.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// noHookLabel makes the hook leave a domain alone while QEMU still runs as
// qemu.conf's user (TestDomainNoRelabel checks both).
const noHookLabel = "<seclabel type='none' model='dac'/>"

// moreDisk is a file disk (Source) or a pool volume disk (Pool, Volume).
type moreDisk struct {
	Format, Target string
	Source         string
	Pool, Volume   string
}

// moreSpec fills testdata/e2e/domain-more.xml.tmpl.
type moreSpec struct {
	Name      string
	MemoryMiB int
	Seclabel  string
	Loader    string // read-only pflash code
	NVRAM     string
	Kernel    string
	Initrd    string
	Cmdline   string
	Disks     []moreDisk
	// UnixSerials are sockets serial ports connect to (mode='connect');
	// none gives the domain a pty serial port.
	UnixSerials []string
}

var (
	moreTmplOnce sync.Once
	moreTmpl     *template.Template
	moreTmplErr  error
)

func moreTemplate(t *testing.T) *template.Template {
	t.Helper()
	moreTmplOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			moreTmplErr = err
			return
		}
		moreTmpl, moreTmplErr = template.ParseFiles(filepath.Join(root, "testdata", "e2e", "domain-more.xml.tmpl"))
	})
	if moreTmplErr != nil {
		t.Fatalf("parse domain-more template: %v", moreTmplErr)
	}
	return moreTmpl
}

// startMore renders spec into the fixture dir and runs `virsh create`; a
// domain that started is destroyed at cleanup if the test left it running.
func (f *fixture) startMore(spec moreSpec) (xmlPath, out string, err error) {
	f.t.Helper()
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 64
	}
	var buf bytes.Buffer
	if err := moreTemplate(f.t).Execute(&buf, spec); err != nil {
		f.t.Fatalf("render domain %s: %v", spec.Name, err)
	}
	suffix := ""
	if spec.Seclabel == noHookLabel {
		suffix = "-nohook"
	}
	xmlPath = filepath.Join(f.dir, spec.Name+suffix+".xml")
	if err := os.WriteFile(xmlPath, buf.Bytes(), 0o644); err != nil {
		f.t.Fatalf("write %s: %v", xmlPath, err)
	}
	out, err = virsh(2*time.Minute, "create", xmlPath)
	if err == nil {
		f.t.Cleanup(func() { _, _ = virsh(time.Minute, "destroy", spec.Name) })
	}
	return xmlPath, out, err
}

// mustStartMore starts spec and stops the test, with libvirt's error, the
// hook's dry-run plan of the same XML and the logs, if it does not start.
func (f *fixture) mustStartMore(spec moreSpec) {
	f.t.Helper()
	xmlPath, out, err := f.startMore(spec)
	if err != nil {
		f.t.Errorf("virsh create %s: %v (libvirt's error below)", spec.Name, err)
		logBlock(f.t, "libvirt error", out)
		f.logPlan(xmlPath)
		f.h.diagnose(f.t, spec.Name)
		f.t.FailNow()
	}
}

// logPlan shows what the installed hook makes of a domain XML.
func (f *fixture) logPlan(xmlPath string) {
	f.t.Helper()
	out, err := exec.Command(hookPath, "plan", xmlPath).CombinedOutput()
	if err != nil {
		out = append(out, fmt.Sprintf("\n(exit: %v)", err)...)
	}
	logBlock(f.t, "libvirt-dac-hook plan "+xmlPath, string(out))
}

// mustFailWithoutHook starts spec with the hook switched off for the domain
// and requires libvirt to refuse it: the files are set up so that QEMU
// cannot use them unless the hook changes something. wantErr, when set, must
// appear in libvirt's error (it names what QEMU could not open).
func (f *fixture) mustFailWithoutHook(spec moreSpec, wantErr string) {
	f.t.Helper()
	spec.Seclabel = noHookLabel
	xmlPath, out, err := f.startMore(spec)
	if err == nil {
		f.t.Errorf("control: %s started with the hook switched off (%s); the setup does not keep QEMU out, so the scenario proves nothing", spec.Name, noHookLabel)
		f.logPlan(xmlPath)
		f.destroy(spec.Name)
		f.t.FailNow()
	}
	if wantErr != "" && !strings.Contains(out, wantErr) {
		f.t.Errorf("control: without the hook %s failed, but libvirt's error does not mention %q", spec.Name, wantErr)
		logBlock(f.t, "libvirt error", out)
	} else {
		logBlock(f.t, "control: libvirt error without the hook (as expected)", tail(out, 3))
	}
	if _, err := virsh(10*time.Second, "domstate", spec.Name); err == nil {
		f.t.Errorf("control: domain %s still exists after its failed start", spec.Name)
	}
	f.check("control start without the hook (failed as it should)", false, spec.Name)
}

// --- directories and ACLs ---

// dirState is everything about a directory the hook might touch: its mode
// and owner, getfacl's view and the raw access ACL xattr (getfacl prints a
// minimal ACL the same whether or not the xattr exists).
type dirState struct {
	Stat    string // stat -c '%a %u:%g'
	Getfacl string // getfacl -p
	XattrHx string // hex of system.posix_acl_access, or "absent"
}

func snapDir(t *testing.T, p string) dirState {
	t.Helper()
	var s dirState
	out, err := exec.Command("stat", "-c", "%a %u:%g", p).CombinedOutput()
	if err != nil {
		t.Fatalf("stat %s: %v: %s", p, err, out)
	}
	s.Stat = strings.TrimSpace(string(out))
	out, err = exec.Command("getfacl", "-p", p).CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl -p %s: %v: %s", p, err, out)
	}
	s.Getfacl = string(out)
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(p, "system.posix_acl_access", buf)
	switch {
	case errors.Is(err, unix.ENODATA):
		s.XattrHx = "absent"
	case err != nil:
		t.Fatalf("getxattr %s system.posix_acl_access: %v", p, err)
	default:
		s.XattrHx = hex.EncodeToString(buf[:n])
	}
	return s
}

// dirSet is a set of directories whose state must come back byte for byte.
type dirSet struct {
	f      *fixture
	paths  []string
	before map[string]dirState
}

func (f *fixture) watchDirs(paths ...string) *dirSet {
	f.t.Helper()
	d := &dirSet{f: f, paths: paths, before: map[string]dirState{}}
	for _, p := range paths {
		d.before[p] = snapDir(f.t, p)
	}
	return d
}

// same requires every directory to be as it was when watched.
func (d *dirSet) same(phase string, domains ...string) {
	d.f.t.Helper()
	d.unchangedExcept(phase, nil, domains...)
}

// unchangedExcept requires every directory but the listed ones to be as it
// was when watched.
func (d *dirSet) unchangedExcept(phase string, skip []string, domains ...string) {
	t := d.f.t
	t.Helper()
	ok := true
	for _, p := range d.paths {
		if slices.Contains(skip, p) {
			continue
		}
		if diff := cmp.Diff(d.before[p], snapDir(t, p)); diff != "" {
			t.Errorf("%s: directory %s changed (mode, owner or ACL; diff below)", phase, p)
			logBlock(t, "-before +now of "+p, diff)
			ok = false
		}
	}
	if !ok {
		d.f.h.diagnose(t, domains...)
	}
}

// requireSearchACL checks that dir has a user:<uid> entry whose effective
// permissions (after the mask) include search, and that the mode's owner
// and other bits are as before (the group bits show the mask, which may
// have to widen for the entry to count).
func (d *dirSet) requireSearchACL(phase, dir string, uid int, domains ...string) {
	t := d.f.t
	t.Helper()
	out, err := exec.Command("getfacl", "-p", "-n", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("getfacl -p -n %s: %v: %s", dir, err, out)
	}
	prefix := fmt.Sprintf("user:%d:", uid)
	var entry string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix) {
			entry = line
		}
	}
	ok := true
	if entry == "" {
		t.Errorf("%s: %s has no %s entry (QEMU's search grant)", phase, dir, prefix)
		logBlock(t, "getfacl -p -n "+dir, string(out))
		ok = false
	} else {
		perm, eff, _ := strings.Cut(strings.TrimPrefix(entry, prefix), "#effective:")
		perm = strings.TrimSpace(perm)
		if !strings.Contains(perm, "x") || (eff != "" && !strings.Contains(eff, "x")) {
			t.Errorf("%s: %s entry %q does not grant search", phase, dir, entry)
			ok = false
		}
	}
	before, now := d.before[dir].Stat, snapDir(t, dir).Stat
	if !sameOwnerOther(before, now) {
		t.Errorf("%s: %s is %q while the VM runs, was %q: only the group class (mask) may change", phase, dir, now, before)
		ok = false
	}
	if !ok {
		d.f.h.diagnose(t, domains...)
	}
}

// sameOwnerOther compares two "%a uid:gid" strings except for the group
// digit of the mode.
func sameOwnerOther(a, b string) bool {
	am, ao, _ := strings.Cut(a, " ")
	bm, bo, _ := strings.Cut(b, " ")
	if ao != bo || len(am) != len(bm) || len(am) < 3 {
		return false
	}
	n := len(am)
	return am[:n-2] == bm[:n-2] && am[n-1] == bm[n-1]
}

// homeLayout builds <fixture>/home/alice/vms: home root's 0755, alice's
// 0700 (so nobody else can reach below it), vms alice's 0755, with a base
// image and overlays (owned by alice, 0600) in vms.
type homeLayout struct {
	home, alice, vms string
	base             string
}

func (f *fixture) homeLayout(aliceMode os.FileMode) homeLayout {
	f.t.Helper()
	a := f.h.alice.owner()
	l := homeLayout{home: filepath.Join(f.dir, "home")}
	l.alice = filepath.Join(l.home, "alice")
	l.vms = filepath.Join(l.alice, "vms")
	for _, d := range []string{l.home, l.alice, l.vms} {
		if err := os.Mkdir(d, 0o755); err != nil {
			f.t.Fatalf("mkdir %s: %v", d, err)
		}
	}
	setOwner(f.t, l.home, owner{0, 0}, 0o755)
	setOwner(f.t, l.vms, a, 0o755)
	l.base = f.image("home/alice/vms/base.qcow2", "qcow2", "16M", "", a, 0o600)
	// The 0700 goes on last: qemu-img runs as root, but keep the images'
	// creation independent of the mode under test.
	setOwner(f.t, l.alice, a, aliceMode)
	return l
}

func (f *fixture) overlay(l homeLayout, name string) string {
	f.t.Helper()
	return f.image("home/alice/vms/"+name, "qcow2", "", l.base, f.h.alice.owner(), 0o600)
}

// TestParentDir0700: a VM whose images (overlay and its backing file) sit
// two levels below a 0700 home directory starts, and afterwards every
// directory on the way is byte for byte as before.
func TestParentDir0700(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	l := f.homeLayout(0o700)
	over := f.overlay(l, "disk.qcow2")
	f.track(l.base, q)
	f.track(over, q)
	dirs := f.watchDirs(f.dir, l.home, l.alice, l.vms)

	name := domainPrefix + "home0700"
	spec := moreSpec{Name: name, Disks: []moreDisk{{Format: "qcow2", Source: over, Target: "vda"}}}
	f.mustFailWithoutHook(spec, "Permission denied")
	dirs.same("after the control start", name)

	f.mustStartMore(spec)
	f.check("running", true, name)
	dirs.requireSearchACL("running", l.alice, q.uid, name)
	dirs.unchangedExcept("running", []string{l.alice}, name)
	f.destroy(name)
	f.check("after destroy", false, name)
	dirs.same("after destroy", name)
}

// TestParentDir0700Shared: two VMs need the same 0700 directory; the
// search grant stays until the last of them is gone, whichever goes first.
func TestParentDir0700Shared(t *testing.T) {
	for _, tc := range []struct {
		name  string
		order [2]int // indexes into the two domains, in the order destroyed
	}{
		{"first-started-released-first", [2]int{0, 1}},
		{"last-started-released-first", [2]int{1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			q := f.h.qemu.owner()
			l := f.homeLayout(0o700)
			baseT := f.track(l.base, q)
			var names [2]string
			var overs [2]*tracked
			for i := range 2 {
				overs[i] = f.track(f.overlay(l, fmt.Sprintf("vm%d.qcow2", i)), q)
				names[i] = fmt.Sprintf("%shomeshared-%d-%d", domainPrefix, tc.order[0], i)
			}
			dirs := f.watchDirs(f.dir, l.home, l.alice, l.vms)
			for i := range 2 {
				f.mustStartMore(moreSpec{Name: names[i], Disks: []moreDisk{{Format: "qcow2", Source: overs[i].path, Target: "vda"}}})
			}
			all := names[:]
			f.check("both running", true, all...)
			dirs.requireSearchACL("both running", l.alice, q.uid, all...)

			first, second := tc.order[0], tc.order[1]
			f.destroy(names[first])
			phase := fmt.Sprintf("%s destroyed, %s running", names[first], names[second])
			ok := f.checkOne(phase, baseT, q)
			ok = f.checkOne(phase, overs[first], overs[first].orig) && ok
			ok = f.checkOne(phase, overs[second], q) && ok
			if !ok {
				f.h.diagnose(t, all...)
			}
			dirs.requireSearchACL(phase, l.alice, q.uid, all...)
			if out, err := virsh(10*time.Second, "domstate", names[second]); err != nil || out != "running" {
				t.Errorf("%s: domstate %s = %q, %v; want running", phase, names[second], out, err)
			}

			f.destroy(names[second])
			f.check("both destroyed", false, all...)
			dirs.same("both destroyed", all...)
		})
	}
}

// TestParentDirMaskedACL: the 0700 directory already has an ACL whose mask
// (r--) would hide a plain user:<qemu>:--x entry; the VM still starts and
// afterwards the ACL, mask included, is exactly as before.
func TestParentDirMaskedACL(t *testing.T) {
	f := newFixture(t)
	q := f.h.qemu.owner()
	l := f.homeLayout(0o700)
	over := f.overlay(l, "disk.qcow2")
	f.track(l.base, q)
	f.track(over, q)
	entries := fmt.Sprintf("u:%d:rwx,m::r--", f.h.bob.uid)
	if out, err := exec.Command("setfacl", "-m", entries, l.alice).CombinedOutput(); err != nil {
		t.Fatalf("setfacl -m %s %s: %v: %s", entries, l.alice, err, out)
	}
	dirs := f.watchDirs(f.dir, l.home, l.alice, l.vms)
	if st := dirs.before[l.alice]; st.XattrHx == "absent" || !strings.Contains(st.Getfacl, "mask::r--") {
		logBlock(t, "getfacl -p "+l.alice, st.Getfacl)
		t.Fatalf("setup: %s should carry an ACL with mask::r--", l.alice)
	}

	name := domainPrefix + "home-masked"
	spec := moreSpec{Name: name, Disks: []moreDisk{{Format: "qcow2", Source: over, Target: "vda"}}}
	f.mustFailWithoutHook(spec, "Permission denied")
	dirs.same("after the control start", name)

	f.mustStartMore(spec)
	f.check("running", true, name)
	dirs.requireSearchACL("running", l.alice, q.uid, name)
	dirs.unchangedExcept("running", []string{l.alice}, name)
	// The entry only counts if the mask has x, and a wider mask also
	// widens user:bob (rwx, was effectively r--) while the VM runs.
	logBlock(t, "ACL of "+l.alice+" while the VM runs", snapDir(t, l.alice).Getfacl)
	f.destroy(name)
	f.check("after destroy", false, name)
	dirs.same("after destroy", name)
}

// --- other files QEMU opens ---

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

// file writes data to name in the fixture dir with owner o and mode.
func (f *fixture) file(name string, data []byte, o owner, mode os.FileMode) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		f.t.Fatalf("write %s: %v", p, err)
	}
	setOwner(f.t, p, o, mode)
	return p
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
	spec := moreSpec{Name: name, Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 dachook=1"}
	f.mustFailWithoutHook(spec, kernel)
	f.mustStartMore(spec)
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

// listenUnix listens on a unix socket at p, owned by o with mode, and
// returns a channel that receives each accepted connection.
func (f *fixture) listenUnix(p string, o owner, mode os.FileMode) <-chan net.Conn {
	f.t.Helper()
	ln, err := net.Listen("unix", p)
	if err != nil {
		f.t.Fatalf("listen on %s: %v", p, err)
	}
	setOwner(f.t, p, o, mode)
	conns := make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	f.t.Cleanup(func() {
		ln.Close()
		<-done
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return conns
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
	spec := moreSpec{Name: name, UnixSerials: []string{sock}}
	f.mustFailWithoutHook(spec, sock)
	select {
	case <-conns:
		t.Errorf("control: QEMU connected to %s although the hook was off", sock)
	default:
	}

	f.mustStartMore(spec)
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
	const storageConf = "/etc/libvirt/storage"
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
	if _, err := os.Stat("/etc/libvirt/storage/" + pool + ".xml"); err != nil {
		t.Fatalf("setup: pool %s has no persistent definition: %v", pool, err)
	}

	name := domainPrefix + "volume"
	spec := moreSpec{Name: name, Disks: []moreDisk{{Format: "qcow2", Pool: pool, Volume: "vol0.qcow2", Target: "vda"}}}
	f.mustFailWithoutHook(spec, "Permission denied")
	f.mustStartMore(spec)
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
	dirs.same("after destroy", name)
}

// ovmfCode is Debian's (ovmf package) non-secure-boot 2 MiB firmware,
// which pairs with OVMF_VARS.fd.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// TestNVRAM: a pflash loader (root's, read-only, under /usr: the hook must
// leave it alone) with a per-VM NVRAM store owned by alice, 0600.
func TestNVRAM(t *testing.T) {
	for _, p := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing under CI=true: install the ovmf package", p)
			}
			t.Skipf("%s missing (install the ovmf package): %v", p, err)
		}
	}
	f := newFixture(t)
	q := f.h.qemu.owner()
	vars, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatalf("read %s: %v", ovmfVars, err)
	}
	nvram := f.file("vm_VARS.fd", vars, f.h.alice.owner(), 0o600)
	f.track(nvram, q)
	code := f.track(ovmfCode, owner{})
	code.running = code.orig

	name := domainPrefix + "nvram"
	spec := moreSpec{Name: name, Loader: ovmfCode, NVRAM: nvram}
	f.mustFailWithoutHook(spec, nvram)
	f.mustStartMore(spec)
	f.check("running", true, name)
	f.destroy(name)
	f.check("after destroy", false, name)
}
