package domain

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"libvirt.org/go/libvirtxml"
)

// MaxXMLSize is the largest domain XML Parse accepts. Real domains are a
// few KiB; the bound keeps a hostile or broken stdin from costing memory.
const MaxXMLSize = 16 << 20

// ErrInvalid matches (with errors.Is) every error Parse returns: the XML
// was refused, and nothing about the host was looked at.
var ErrInvalid = errors.New("invalid domain XML")

// parseError is a one-line refusal that still matches ErrInvalid.
type parseError struct{ msg string }

func (e *parseError) Error() string        { return e.msg }
func (e *parseError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &parseError{msg: fmt.Sprintf(format, args...)}
}

// Parse reads a libvirt domain XML and lists the host resources QEMU will
// open that libvirt's DAC driver (src/security/security_dac.c,
// virSecurityDACSetAllLabel) would relabel. It never touches the host.
//
// Before decoding it refuses input over MaxXMLSize, invalid UTF-8, any
// DOCTYPE/ENTITY (or other <!...> declaration), and a root element other
// than <domain>. Every emitted Path is absolute and clean; a relative
// path, a path with NUL or with a ".." element is an error naming the
// element, because lexical cleaning of ".." can name a different file
// than the kernel resolves through a symlink.
//
// Guarantees: the result depends only on xml; every error matches
// ErrInvalid and is one line. Non-guarantees: a nil error does not mean
// libvirt will accept the domain, and Resources may name the same file
// twice (two disks sharing a backing image); callers dedupe by inode.
func Parse(data []byte) (*Domain, error) {
	if err := precheck(data); err != nil {
		return nil, err
	}
	var x libvirtxml.Domain
	if err := unmarshal(data, &x); err != nil {
		return nil, err
	}
	p := parser{x: &x}
	if err := p.run(); err != nil {
		return nil, err
	}
	p.d.Transient = transientDisks(&x)
	return &p.d, nil
}

// unmarshal decodes straight from the bytes: libvirtxml.Domain.Unmarshal
// takes a string and converts it back to []byte, which would copy up to
// MaxXMLSize twice for nothing. It is the same xml.Unmarshal call.
func unmarshal(data []byte, x *libvirtxml.Domain) (err error) {
	// libvirtxml is third-party code run on untrusted bytes; a panic in
	// one of its UnmarshalXML methods must fail the parse, not the hook.
	defer func() {
		if r := recover(); r != nil {
			err = invalidf("domain XML: decoder panic: %s", OneLine(fmt.Sprint(r)))
		}
	}()
	if err := xml.Unmarshal(data, x); err != nil {
		return invalidf("domain XML: %s", OneLine(err.Error()))
	}
	return nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// precheck refuses what the decoder should never see. It is linear in
// len(data) and allocates nothing on success.
func precheck(data []byte) error {
	if len(data) > MaxXMLSize {
		return invalidf("domain XML: %d bytes is over the %d MiB limit", len(data), MaxXMLSize>>20)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return invalidf("domain XML: empty input")
	}
	if !utf8.Valid(data) {
		return invalidf("domain XML: not valid UTF-8")
	}
	// encoding/xml never expands external entities, but a DOCTYPE can
	// declare ones other parsers would, and libvirt never emits one. Any
	// "<!" that does not open a comment or CDATA section is a declaration.
	// A "<!" inside a comment or CDATA is refused too: harmless to a real
	// domain XML and simpler than tracking context.
	for rest := data; ; {
		i := bytes.Index(rest, []byte("<!"))
		if i < 0 {
			break
		}
		rest = rest[i+2:]
		if bytes.HasPrefix(rest, []byte("--")) || bytes.HasPrefix(rest, []byte("[CDATA[")) {
			continue
		}
		return invalidf("domain XML: DOCTYPE/ENTITY declarations are not allowed (found <!%s)", declName(rest))
	}
	root, err := rootElement(data)
	if err != nil {
		return err
	}
	if root != "domain" {
		return invalidf("domain XML: not a <domain> element (root is <%s>)", root)
	}
	return nil
}

// declName returns the keyword after "<!" for the error message.
func declName(b []byte) string {
	n := 0
	for n < len(b) && n < 16 && isNameByte(b[n]) {
		n++
	}
	return string(b[:n])
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == ':' || c >= 0x80
}

// rootElement skips the prolog (BOM, XML declaration, processing
// instructions, comments, white space) and returns the root element's
// name as written, prefix included.
func rootElement(data []byte) (string, error) {
	b := bytes.TrimPrefix(data, utf8BOM)
	for {
		b = bytes.TrimLeft(b, " \t\r\n")
		switch {
		case len(b) == 0:
			return "", invalidf("domain XML: no root element")
		case bytes.HasPrefix(b, []byte("<?")):
			i := bytes.Index(b, []byte("?>"))
			if i < 0 {
				return "", invalidf("domain XML: unterminated processing instruction")
			}
			b = b[i+2:]
		case bytes.HasPrefix(b, []byte("<!--")):
			i := bytes.Index(b[4:], []byte("-->"))
			if i < 0 {
				return "", invalidf("domain XML: unterminated comment")
			}
			b = b[4+i+3:]
		case b[0] == '<':
			n := 1
			for n < len(b) && n < 65 && isNameByte(b[n]) {
				n++
			}
			if n == 1 {
				return "", invalidf("domain XML: malformed root element")
			}
			return string(b[1:n]), nil
		default:
			return "", invalidf("domain XML: text before the root element")
		}
	}
}

// OneLine puts a message on one line: line breaks become "; " (errors.Join
// separates its errors with them), carriage returns spaces, and every other
// control character (an escape sequence a file name carried, a Unicode
// line separator) is written as a Go escape (\x1b, \u2028). Parse's errors
// go through it; so does everything the hook writes to stderr, because
// libvirt appends a hook's stderr to its own one-line error.
func OneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", " ")
	s = strings.ReplaceAll(s, "\n", "; ")
	if strings.IndexFunc(s, unprintable) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unprintable(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// unprintable is a rune a terminal or a log reader may act on: C0 and C1
// controls but tab, DEL, the Unicode line and paragraph separators.
func unprintable(r rune) bool {
	return r < 0x20 && r != '\t' || r >= 0x7f && r < 0xa0 || r == 0x2028 || r == 0x2029
}

// cleanPath checks a path taken from the XML and returns it cleaned.
func cleanPath(from, p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", invalidf("%s: path %q contains NUL", from, p)
	}
	if !filepath.IsAbs(p) {
		return "", invalidf("%s: path %q is not absolute", from, p)
	}
	if strings.Contains(p, "..") { // cheap test first: this runs per path
		for _, el := range strings.Split(p, "/") {
			if el == ".." {
				return "", invalidf("%s: path %q has a \"..\" element", from, p)
			}
		}
	}
	return filepath.Clean(p), nil
}

// CheckName refuses a domain name the hook cannot record a domain under:
// empty (an XML without <name>, or an empty argument from libvirt: its
// records could never be told from another unnamed domain's, and no
// release or restore could name it), or holding '/' or a control
// character, which libvirt itself refuses in names. The error matches
// ErrInvalid and is one line.
func CheckName(name string) error {
	if name == "" {
		return invalidf("domain XML has no <name> (or libvirt gave an empty domain name): refusing, since nothing recorded for it could be given back by name; give the domain a name")
	}
	for _, r := range name {
		if r == '/' || r < 0x20 || r == 0x7f {
			return invalidf("domain name %q holds %q, which libvirt does not allow in names: refusing", name, r)
		}
	}
	return nil
}
