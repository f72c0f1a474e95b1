package owner

import (
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

// FuzzCharRules checks the allowlist's invariants for any device number
// and anything sysfs may say about it: no kind is ever allowed memory
// devices (1:*), /dev/tty, /dev/console and /dev/ptmx (5:*), virtual
// consoles (4:0-63) or their screen buffers (7:*), and a misc device
// (10:*) passes only with a sysfs name the kind lists, or as /dev/tpm0.
func FuzzCharRules(f *testing.F) {
	f.Add(uint32(1), uint32(1), false, true, "mem", "mem")
	f.Add(uint32(10), uint32(223), false, true, "misc", "uinput")
	f.Add(uint32(10), uint32(224), false, false, "", "")
	f.Add(uint32(13), uint32(67), false, true, "input", "event3")
	f.Add(uint32(4), uint32(3), true, true, "tty", "tty3")
	f.Fuzz(func(t *testing.T, major, minor uint32, exact, known bool, subsystem, name string) {
		major, minor = major&(1<<12-1), minor&(1<<20-1)
		ci := charInfo{known: known, subsystem: subsystem, name: name}
		dyn := map[string][]uint32{"vfio": {240}, "tpm": {241}, "tpmrm": {242}, "dax": {243}}
		for kind, rules := range charRules {
			for _, r := range rules {
				if !r.allows(major, minor, exact, ci, dyn) {
					continue
				}
				dangerous := major == 1 || major == 5 || major == 7 || major == 4 && minor < 64
				if dangerous {
					t.Fatalf("%s allows %d:%d (sysfs %+v, exact %v)", kind, major, minor, ci, exact)
				}
				misc := major == miscMajor && !(minor == tpmMiscMin && kind == domain.KindTPM) && !(r.exactOK && exact)
				if misc && (!known || !nameMatchesAny(name, r.names)) {
					t.Fatalf("%s allows misc %d:%d without a listed sysfs name (sysfs %+v)", kind, major, minor, ci)
				}
			}
		}
	})
}

func nameMatchesAny(name string, names []string) bool {
	for _, n := range names {
		if nameMatches(name, n) {
			return true
		}
	}
	return false
}
