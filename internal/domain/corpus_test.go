package domain

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/testenv"
)

// corpusDir finds libvirt's qemuxml2argvdata in the shared directory
// (testenv.SharedDir): <shared>/corpus/libvirt-9.0.0/qemuxml2argvdata.
func corpusDir(t *testing.T) string {
	t.Helper()
	c := filepath.Join(testenv.SharedDir(t), "corpus", "libvirt-9.0.0", "qemuxml2argvdata")
	if _, err := os.Stat(c); err != nil {
		t.Fatalf("the shared directory has no libvirt XML corpus: %v", err)
	}
	return c
}

func corpusFiles(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(corpusDir(t), "*.xml"))
	if err != nil || len(files) == 0 {
		t.Skipf("libvirt XML corpus is empty: %v", err)
	}
	return files
}

// TestCorpus parses libvirt's own test domains. Some are invalid on
// purpose (libvirt's "-invalid" cases); Parse may refuse those, but must
// not panic, and everything it returns must hold the invariants.
func TestCorpus(t *testing.T) {
	files := corpusFiles(t)
	var ok, refused int
	kinds := map[Kind]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Parse(b)
		if err != nil {
			refused++
			t.Logf("refused %s: %v", filepath.Base(f), err)
			continue
		}
		ok++
		checkInvariants(t, filepath.Base(f), d)
		for _, r := range d.Resources {
			kinds[r.Kind]++
		}
	}
	t.Logf("corpus: %d parsed, %d refused, resources by kind: %v", ok, refused, kinds)
	// The refused ones are libvirt's deliberately invalid inputs; a jump
	// means Parse started refusing real domains.
	if refused > 10 {
		t.Errorf("%d of %d corpus files refused, want at most 10", refused, len(files))
	}
}

// wanted is a host path a corpus XML names, found by a plain walk over the
// XML that shares no code with Parse.
type wanted struct{ kind, path string }

type walkFrame struct {
	name  string
	attrs []xml.Attr
}

func attr(a []xml.Attr, name string) string {
	for _, x := range a {
		if x.Name.Local == name {
			return x.Value
		}
	}
	return ""
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

// namedPaths lists the local paths an XML names in the elements and
// attributes known to carry host paths that QEMU opens and libvirt's DAC
// driver labels. Deliberately not counted (and not emitted by Parse, see
// emit.go): <loader>, network/dir/vhost-user disks, disk <reservations>,
// chardev <log>, <mirror> chains (block jobs, not at start), redirdev,
// rng, shmem, filesystem, smartcard <database>, video <acceleration
// rendernode> (vhost-user-gpu runs as its own process).
func namedPaths(data []byte) ([]wanted, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	var (
		stack   []walkFrame
		out     []wanted
		collect string // kind whose path is the current element's text
		text    []byte
	)
	inMirror := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			name := tk.Name.Local
			var parent, grand walkFrame
			if n := len(stack); n > 0 {
				parent = stack[n-1]
				if n > 1 {
					grand = stack[n-2]
				}
			}
			stack = append(stack, walkFrame{name, tk.Attr})
			if name == "mirror" {
				inMirror++
			}
			if inMirror > 0 {
				continue
			}
			out = append(out, attrPaths(name, tk.Attr, parent, grand)...)
			if kind := textPathKind(name, tk.Attr, parent, grand); kind != "" {
				collect = kind
			}
			text = text[:0]
		case xml.CharData:
			if collect != "" {
				text = append(text, tk...)
			}
		case xml.EndElement:
			if collect != "" && len(text) > 0 {
				out = append(out, wanted{collect, string(text)})
			}
			collect = ""
			if tk.Name.Local == "mirror" {
				inMirror--
			}
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
}

// TestCorpusPathCoverage checks, file by file, that every local path a
// corpus XML names (found independently by namedPaths) is listed by Parse.
func TestCorpusPathCoverage(t *testing.T) {
	files := corpusFiles(t)
	totals := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Parse(b)
		if err != nil {
			continue // counted and logged by TestCorpus
		}
		want, err := namedPaths(b)
		if err != nil {
			t.Errorf("%s: walk: %v", filepath.Base(f), err)
			continue
		}
		listed := make(map[string]bool, len(d.Resources))
		for _, r := range d.Resources {
			listed[r.Path] = true
		}
		for _, w := range want {
			totals[w.kind]++
			if !listed[filepath.Clean(w.path)] {
				t.Errorf("%s: %s path %q named by the XML is not listed by Parse", filepath.Base(f), w.kind, w.path)
			}
		}
	}
	keys := make([]string, 0, len(totals))
	for k := range totals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("corpus paths named, kind %-12s %5d", k, totals[k])
	}
	if len(totals) == 0 {
		t.Error("the corpus names no paths at all: the walk is broken")
	}
}

// attrPaths lists the paths that element name (with attributes attrs,
// under parent and grand) names in its attributes.
func attrPaths(name string, attrs []xml.Attr, parent, grand walkFrame) []wanted {
	var out []wanted
	add := func(kind, p string) {
		if p != "" {
			out = append(out, wanted{kind, p})
		}
	}
	switch name {
	case "source":
		sourcePaths(attrs, parent, grand, add)
	case "device":
		if parent.name == "backend" && grand.name == "tpm" {
			add("tpm", attr(attrs, "path"))
		}
	case "entry":
		if parent.name == "sysinfo" && attr(parent.attrs, "type") == "fwcfg" {
			add("fwcfg", attr(attrs, "file"))
		}
	case "gl":
		if parent.name == "graphics" {
			add("rendernode", attr(attrs, "rendernode"))
		}
	}
	return out
}

// sourcePaths adds the paths a <source> element names in its attributes.
func sourcePaths(attrs []xml.Attr, parent, grand walkFrame, add func(kind, p string)) {
	fileOrDev := func() string {
		if f := attr(attrs, "file"); f != "" {
			return f
		}
		return attr(attrs, "dev")
	}
	pt := attr(parent.attrs, "type")
	switch parent.name {
	case "disk":
		if pt == "" || oneOf(pt, "file", "block") {
			add("disk", fileOrDev())
		}
	case "backingStore":
		if oneOf(pt, "file", "block") {
			add("backing", fileOrDev())
		}
	case "dataStore":
		if pt == "" || oneOf(pt, "file", "block") {
			add("data-file", fileOrDev())
		}
	case "nvram":
		if grand.name == "os" && oneOf(pt, "file", "block") {
			add("nvram", fileOrDev())
		}
	case "serial", "parallel", "console", "channel":
		if oneOf(pt, "file", "dev", "pipe", "unix") {
			add("chardev", attr(attrs, "path"))
		}
	case "smartcard":
		if attr(parent.attrs, "mode") == "passthrough" && oneOf(pt, "file", "dev", "pipe", "unix") {
			add("chardev", attr(attrs, "path"))
		}
	case "backend":
		if grand.name == "tpm" && pt == "external" {
			add("tpm", attr(attrs, "path"))
		}
	case "input":
		add("evdev", attr(attrs, "evdev"))
		add("evdev", attr(attrs, "dev"))
	}
}

// textPathKind returns the kind of path element name holds as its text,
// or "" when its text is no path.
func textPathKind(name string, attrs []xml.Attr, parent, grand walkFrame) string {
	switch name {
	case "kernel", "initrd", "dtb":
		if parent.name == "os" {
			return name
		}
	case "nvram":
		if parent.name == "os" && attr(attrs, "type") == "" {
			return "nvram"
		}
	case "table":
		if parent.name == "acpi" && grand.name == "os" {
			return "acpi-table"
		}
	case "path":
		if parent.name == "source" && grand.name == "memory" && oneOf(attr(grand.attrs, "model"), "nvdimm", "virtio-pmem") {
			return "memory"
		}
	case "block", "char":
		if parent.name == "source" && grand.name == "hostdev" && attr(grand.attrs, "mode") == "capabilities" {
			return "hostdev-" + name
		}
	}
	return ""
}
