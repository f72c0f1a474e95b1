package owner

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

// charRule says which character devices one kind of resource may be. A
// node passes when its device number is one the rule names (a fixed major
// and minor range, or a major the kernel registered under one of
// procNames in /proc/devices) and, when sysfs has an entry for the number
// (/sys/dev/char/MAJ:MIN), the entry's subsystem and device name are ones
// the rule names. A number without a sysfs entry is a device this kernel
// does not have: opening it gives ENXIO, so only rules whose majors say
// nothing on their own (misc devices, whose minors are handed out at run
// time) insist on the entry.
type charRule struct {
	what      string      // for messages: "an evdev input (/dev/input/eventN)"
	fixed     []charRange // device numbers named by devices.txt
	procNames []string    // /proc/devices names of dynamic majors
	// anyMajorOf lets any major through whose sysfs subsystem is one of
	// subsystems (serial drivers with dynamic majors); fixed and
	// procNames still apply without sysfs.
	anyMajorOf bool
	subsystems []string // sysfs subsystem names allowed; nil: any
	names      []string // sysfs device name prefixes allowed; nil: any
	needSysfs  bool     // refuse a number sysfs does not know
	// exactOK accepts the number the resource's own sysfs lookup gave
	// (the VFIO group's dev file) whatever its major.
	exactOK bool
	// deny are numbers refused even when the rest matches (the
	// virtual consoles and /dev/tty, /dev/console, /dev/ptmx for ttys).
	deny []charRange
}

// charRange is major M with minors Lo..Hi inclusive.
type charRange struct {
	Major  uint32
	Lo, Hi uint32
}

func (r charRange) has(major, minor uint32) bool {
	return major == r.Major && minor >= r.Lo && minor <= r.Hi
}

const anyMinor = 1<<20 - 1

// Majors fixed by the kernel (Documentation/admin-guide/devices.txt).
const (
	miscMajor   = 10
	inputMajor  = 13
	sgMajor     = 21
	usbMajor    = 189
	drmMajor    = 226
	tpmMiscMin  = 224 // TPM_MINOR: /dev/tpm0 on the misc major
	renderFirst = 128 // DRM render nodes are minors 128..191
)

var (
	ruleUSB = charRule{what: "a USB device node (/dev/bus/usb/BBB/DDD, 189:*)",
		fixed: []charRange{{usbMajor, 0, anyMinor}}, subsystems: []string{"usb"}}
	ruleSG = charRule{what: "a SCSI generic node (/dev/sgN, 21:*)",
		fixed: []charRange{{sgMajor, 0, anyMinor}}, subsystems: []string{"scsi_generic"}, names: []string{"sg"}}
	ruleVFIO = charRule{what: "a VFIO group node (/dev/vfio/N)",
		procNames: []string{"vfio"}, subsystems: []string{"vfio"}, exactOK: true}
	ruleTPM = charRule{what: "a TPM (/dev/tpmN, 10:224 or the tpm major; /dev/tpmrmN)",
		fixed: []charRange{{miscMajor, tpmMiscMin, tpmMiscMin}}, procNames: []string{"tpm", "tpmrm"},
		subsystems: []string{"tpm", "tpmrm"}, names: []string{"tpm", "tpmrm"}}
	ruleEvdev = charRule{what: "an evdev input (/dev/input/eventN, 13:*)",
		// 64..95 are the static event minors; 256 up are handed out
		// to js, mouse and event nodes alike, so there the sysfs name
		// decides. 0..63 are js and mouse nodes.
		fixed:      []charRange{{inputMajor, 64, 95}, {inputMajor, 256, anyMinor}},
		subsystems: []string{"input"}, names: []string{"event"}}
	ruleRender = charRule{what: "a DRM render node (/dev/dri/renderDN, 226:128+)",
		fixed: []charRange{{drmMajor, renderFirst, anyMinor}}, subsystems: []string{"drm"}, names: []string{"renderD"}}
	ruleVhostSCSI = miscRule("/dev/vhost-scsi", "vhost-scsi")
	ruleSEV       = miscRule("/dev/sev", "sev")
	ruleSGX       = miscRule("/dev/sgx_vepc or /dev/sgx_provision", "sgx_vepc", "sgx_provision")
	ruleTTY       = charRule{what: "a serial port, pty or parallel port (ttySN, ttyUSBN, ttyACMN, pts/N, parportN)",
		fixed: []charRange{
			{4, 64, 255},       // ttyS
			{166, 0, anyMinor}, // ttyACM
			{188, 0, anyMinor}, // ttyUSB
			{204, 0, anyMinor}, // low-density serial (ttyAMA, ...)
			{99, 0, anyMinor},  // parport
			{136, 0, anyMinor}, {137, 0, anyMinor}, {138, 0, anyMinor}, {139, 0, anyMinor},
			{140, 0, anyMinor}, {141, 0, anyMinor}, {142, 0, anyMinor}, {143, 0, anyMinor}, // pts
		},
		anyMajorOf: true, subsystems: []string{"tty", "ppdev", "parport"},
		deny: []charRange{{miscMajor, 0, anyMinor}}}
	ruleDax = charRule{what: "a device-dax node (/dev/daxN.M)",
		procNames: []string{"dax"}, subsystems: []string{"dax"}, names: []string{"dax"}}
)

// neverChar are refused for every kind, whatever sysfs says: memory and
// entropy devices (mem, kmem, null, port, zero, full, random, kmsg), the
// virtual consoles, /dev/tty, /dev/console, /dev/ptmx and the console
// screen buffers (vcs, vcsa).
var neverChar = []charRange{{1, 0, anyMinor}, {4, 0, 63}, {5, 0, anyMinor}, {7, 0, anyMinor}}

func miscRule(what string, names ...string) charRule {
	return charRule{what: what, fixed: []charRange{{miscMajor, 0, anyMinor}},
		subsystems: []string{"misc"}, names: names, needSysfs: true}
}

// charRules is the allowlist: the character devices each kind of resource
// may be. A kind not listed may be no character device at all (/dev/null,
// /dev/mem, /dev/kvm, /dev/cpu/N/msr, /dev/vcsN, /dev/uinput, ... are in no
// list). README "## Security" shows the same table.
var charRules = map[domain.Kind][]charRule{
	domain.KindUSB:         {ruleUSB},
	domain.KindSCSI:        {ruleSG},
	domain.KindVFIO:        {ruleVFIO},
	domain.KindTPM:         {ruleTPM},
	domain.KindEvdev:       {ruleEvdev},
	domain.KindRenderNode:  {ruleRender},
	domain.KindSCSIHost:    {ruleVhostSCSI},
	domain.KindSEV:         {ruleSEV},
	domain.KindSGX:         {ruleSGX},
	domain.KindChardevDev:  {ruleTTY},
	domain.KindMemory:      {ruleDax},
	domain.KindHostdevChar: {ruleEvdev, ruleTTY, ruleUSB},
}

// charInfo is what sysfs says about a character device number.
type charInfo struct {
	known     bool
	subsystem string
	name      string // basename of the device directory: event3, tpm0, sg1
	dir       string // /sys/dev/char/MAJ:MIN, resolved
}

func (p Policy) charInfo(rdev uint64) charInfo {
	link := filepath.Join(p.sysRoot(), "dev", "char", devString(rdev))
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return charInfo{}
	}
	ci := charInfo{known: true, name: filepath.Base(dir), dir: dir}
	if sub, err := filepath.EvalSymlinks(filepath.Join(dir, "subsystem")); err == nil {
		ci.subsystem = filepath.Base(sub)
	}
	return ci
}

// checkChar applies the allowlist of kind to the character device rdev
// at path.
func (p Policy) checkChar(path string, kind domain.Kind, rdev uint64, exact bool) error {
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	rules := charRules[kind]
	if len(rules) == 0 {
		return fmt.Errorf("%s is character device %d:%d, and a %s resource may be no character device; point the XML at the file the element is for: %w", path, major, minor, kindName(kind), ErrRefused)
	}
	ci := p.charInfo(rdev)
	dyn := p.charMajors()
	var whats []string
	for _, r := range rules {
		if r.allows(major, minor, exact, ci, dyn) {
			return nil
		}
		whats = append(whats, r.what)
	}
	seen := "no sysfs entry"
	if ci.known {
		seen = fmt.Sprintf("sysfs says %s of subsystem %q", ci.name, ci.subsystem)
	}
	return fmt.Errorf("%s is character device %d:%d (%s), but a %s resource must be %s; point the XML at the right device node: %w",
		path, major, minor, seen, kindName(kind), strings.Join(whats, " or "), ErrRefused)
}

func kindName(k domain.Kind) string {
	if k == "" {
		return "file"
	}
	return string(k)
}

// allows reports whether major:minor passes r. exact says the number came
// from sysfs for this very resource (USB, SCSI and VFIO lookups); for a
// rule with exactOK that settles the major by itself.
func (r charRule) allows(major, minor uint32, exact bool, ci charInfo, dyn map[string][]uint32) bool {
	for _, d := range append(r.deny, neverChar...) {
		if d.has(major, minor) {
			return false
		}
	}
	numOK := exact && r.exactOK
	for _, f := range r.fixed {
		numOK = numOK || f.has(major, minor)
	}
	for _, n := range r.procNames {
		numOK = numOK || slices.Contains(dyn[n], major)
	}
	if r.anyMajorOf && ci.known && slices.Contains(r.subsystems, ci.subsystem) {
		numOK = true
	}
	if !numOK {
		return false
	}
	if !ci.known {
		return !r.needSysfs
	}
	if r.subsystems != nil && !slices.Contains(r.subsystems, ci.subsystem) {
		return false
	}
	if r.names != nil && !slices.ContainsFunc(r.names, func(n string) bool { return nameMatches(ci.name, n) }) {
		return false
	}
	return true
}

// nameMatches: misc device names are exact ("sev"), the others a prefix
// followed by digits ("event3", "tpm0", "renderD128").
func nameMatches(name, want string) bool {
	if name == want {
		return true
	}
	rest, ok := strings.CutPrefix(name, want)
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// charMajors reads the character section of /proc/devices: name → majors.
func (p Policy) charMajors() map[string][]uint32 {
	if h := p.host; h != nil {
		h.majorsOnce.Do(func() { h.charMajors = readCharMajors(p.procRoot()) })
		return h.charMajors
	}
	return readCharMajors(p.procRoot())
}

func readCharMajors(proc string) map[string][]uint32 {
	out := map[string][]uint32{}
	f, err := os.Open(filepath.Join(proc, "devices"))
	if err != nil {
		return out
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose
	sc := bufio.NewScanner(f)
	inChar := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "Character devices:":
			inChar = true
			continue
		case strings.HasSuffix(line, "devices:"):
			inChar = false
			continue
		}
		if !inChar {
			continue
		}
		num, name, ok := strings.Cut(line, " ")
		n, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil {
			continue
		}
		name = strings.TrimSpace(name)
		out[name] = append(out[name], uint32(n))
	}
	return out
}
