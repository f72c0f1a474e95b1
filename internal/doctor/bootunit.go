package doctor

import (
	"os"
	"path/filepath"
)

// bootUnit is the unit that gives back stale records at boot.
const bootUnit = "libvirt-dac-hook-boot.service"

// systemdRoot is prefixed to every systemd path doctor looks at; tests
// point it at a tree of their own.
var systemdRoot = ""

// unitDirs are where systemd finds unit files, most specific first.
var unitDirs = []string{"/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// checkBootUnit reports whether the boot unit is installed and enabled
// (wanted by one of the targets or daemons its [Install] names): without
// it, records a host crash leaves stay until `restore --stale`.
func checkBootUnit(rep *Report) {
	if _, err := os.Stat(filepath.Join(systemdRoot, "/run/systemd/system")); err != nil {
		rep.add(Finding{"boot unit", StatusOK, "systemd is not running: after a host crash, run `libvirt-dac-hook restore --stale` before starting libvirtd", ""})
		return
	}
	found := ""
	for _, d := range unitDirs {
		p := filepath.Join(systemdRoot, d, bootUnit)
		if _, err := os.Stat(p); err == nil {
			found = filepath.Join(d, bootUnit)
			break
		}
	}
	if found == "" {
		rep.add(Finding{"boot unit", StatusWarn, bootUnit + " is not installed: records a host crash leaves stay until `restore --stale`", "make install, or install the package"})
		return
	}
	for _, w := range []string{"multi-user.target", "libvirtd.service", "virtqemud.service"} {
		if _, err := os.Stat(filepath.Join(systemdRoot, "/etc/systemd/system", w+".wants", bootUnit)); err == nil {
			rep.add(Finding{"boot unit", StatusOK, found + " enabled (wanted by " + w + ")", ""})
			return
		}
	}
	rep.add(Finding{"boot unit", StatusWarn, found + " is not enabled: records a host crash leaves stay until `restore --stale`", "systemctl enable " + bootUnit})
}
