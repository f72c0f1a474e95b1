//go:build e2e

package e2e

// Which libvirt the suite runs against. LIBVIRT_DAC_HOOK_E2E_LIBVIRT
// selects it (`make e2e` runs the suite once for each):
//
//   - 9 (the default): the machine's own, Debian 12's libvirt 9.0 and QEMU 7.2.
//   - 11: Debian 13's libvirt 11.3 and QEMU 10.0, installed with mmdebstrap
//     into a root directory kept outside the clone
//     (/var/cache/libvirt-dac-hook-e2e/trixie-root, made on first use from
//     the Debian mirror the machine's apt uses, reused afterwards), its
//     daemons run with it as their root (host_test.go). Debian 13 ships libvirt's
//     monolithic libvirtd, not the modular virtqemud (its libvirt-daemon
//     package has no modular daemons), so that is what runs: libvirtd with
//     the QEMU and storage drivers, and virtlogd.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// libvirtRelease is a libvirt the suite can run.
type libvirtRelease struct {
	name string // "9", "11": the LIBVIRT_DAC_HOOK_E2E_LIBVIRT value
	// major is the version `virsh version` must report for the daemon.
	major string
	// root is the directory that is the daemons' root; "" for the
	// machine's own libvirt.
	root string
}

const (
	trixieRootDefault = "/var/cache/libvirt-dac-hook-e2e/trixie-root"
	// trixiePackages are what the root needs, and no more: libvirtd with
	// the QEMU and storage drivers, virtlogd, QEMU and its firmware.
	trixiePackages = "libvirt-daemon,libvirt-daemon-driver-qemu,libvirt-daemon-driver-storage,libvirt-daemon-log,libvirt-clients,qemu-system-x86,qemu-utils,ovmf"
	// trixieStamp, inside the root, names the package list it was made
	// with: a root made with another list is made again.
	trixieStamp = ".libvirt-dac-hook-e2e-packages"
)

// selectedLibvirt is the release LIBVIRT_DAC_HOOK_E2E_LIBVIRT names, its
// root made when it is missing.
func selectedLibvirt() (libvirtRelease, error) {
	switch v := os.Getenv("LIBVIRT_DAC_HOOK_E2E_LIBVIRT"); v {
	case "", "9":
		return libvirtRelease{name: "9", major: "9."}, nil
	case "11":
		root := os.Getenv("LIBVIRT_DAC_HOOK_E2E_TRIXIE_ROOT")
		if root == "" {
			root = trixieRootDefault
		}
		if err := ensureTrixieRoot(root); err != nil {
			return libvirtRelease{}, err
		}
		return libvirtRelease{name: "11", major: "11.", root: root}, nil
	default:
		return libvirtRelease{}, fmt.Errorf("LIBVIRT_DAC_HOOK_E2E_LIBVIRT=%s: want 9 (the machine's libvirt) or 11 (Debian 13's)", v)
	}
}

// ensureTrixieRoot makes the Debian 13 root with mmdebstrap unless it is
// there already, made with trixiePackages. It is made beside its final
// place and renamed, so a killed run never leaves half a root to reuse.
func ensureTrixieRoot(root string) error {
	if stamp, err := os.ReadFile(filepath.Join(root, trixieStamp)); err == nil && strings.TrimSpace(string(stamp)) == trixiePackages {
		return nil
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		if out, err := exec.Command("apt-get", "install", "-y", "-q", "mmdebstrap").CombinedOutput(); err != nil {
			return fmt.Errorf("%w: no mmdebstrap to make the Debian 13 root, and apt-get install mmdebstrap: %v: %s", errSkip, err, tail(string(out), 5))
		}
	}
	mirror := debianMirror()
	fmt.Printf("e2e: making the Debian 13 root %s with mmdebstrap from %s (once; later runs reuse it)\n", root, mirror)
	tmp := root + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove %s: %w", tmp, err)
	}
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(root), err)
	}
	cmd := exec.Command("mmdebstrap", "--variant=apt", `--aptopt=APT::Install-Recommends "false"`,
		"--include="+trixiePackages, "trixie", tmp, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mmdebstrap trixie %s: %w: %s", tmp, err, tail(string(out), 20))
	}
	if err := os.WriteFile(filepath.Join(tmp, trixieStamp), []byte(trixiePackages+"\n"), 0o644); err != nil {
		return fmt.Errorf("stamp %s: %w", tmp, err)
	}
	if err := os.RemoveAll(root); err != nil {
		return fmt.Errorf("remove the old %s: %w", root, err)
	}
	if err := os.Rename(tmp, root); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// debianMirror is the Debian archive the machine's apt uses (deb822
// .sources or one-line sources.list), not its security archive;
// deb.debian.org when none is found.
func debianMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if u := firstURI(f, func(line string) (string, bool) {
			v, ok := strings.CutPrefix(line, "URIs:")
			if fl := strings.Fields(v); ok && len(fl) > 0 {
				return fl[0], true
			}
			return "", false
		}); u != "" {
			return u
		}
	}
	list, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, list...) {
		if u := firstURI(f, func(line string) (string, bool) {
			fl := strings.Fields(line)
			if len(fl) < 3 || fl[0] != "deb" {
				return "", false
			}
			for _, x := range fl[1:] {
				if strings.Contains(x, "://") {
					return x, true
				}
			}
			return "", false
		}); u != "" {
			return u
		}
	}
	return "http://deb.debian.org/debian"
}

// firstURI returns the first URI pick finds in file that is a Debian
// archive but not the security one.
func firstURI(file string, pick func(line string) (string, bool)) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		u, ok := pick(line)
		if ok && strings.Contains(u, "debian") && !strings.Contains(u, "security") {
			return u
		}
	}
	return ""
}
