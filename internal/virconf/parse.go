package virconf

import (
	"bytes"
	"errors"
	"fmt"
	"math"
)

// Limits on what Parse accepts. qemu.conf is about 40 KiB and nests no
// lists, so these only stop hostile or corrupt input from costing memory or
// stack.
const (
	// MaxSize is the largest input Parse accepts, in bytes. libvirt's own
	// limit is 10 MiB; nothing legitimate comes close to either.
	MaxSize = 4 << 20
	// MaxDepth is how deeply lists may nest. libvirt recurses without a
	// limit; no libvirt setting uses nested lists at all.
	MaxDepth = 32
	// MaxValues bounds the number of entries plus list elements, so that a
	// 4 MiB list of one-digit numbers cannot turn into hundreds of MiB of
	// Values.
	MaxValues = 1 << 16
)

// Errors returned by Parse, wrapped in a *SyntaxError when they concern a
// place in the input. Compare with errors.Is.
var (
	ErrSyntax    = errors.New("syntax error")
	ErrTooLarge  = errors.New("input too large")
	ErrTooDeep   = errors.New("lists nested too deeply")
	ErrTooMany   = errors.New("too many values")
	ErrBadNumber = errors.New("number out of range")
)

// SyntaxError is a parse error at a line of the input.
type SyntaxError struct {
	Line int    // 1-based line of the offending byte
	Msg  string // what was wrong, e.g. "expected '=' after name \"user\""
	Err  error  // ErrSyntax, ErrTooDeep, ErrTooMany or ErrBadNumber
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Unwrap returns the sentinel the error is an instance of.
func (e *SyntaxError) Unwrap() error { return e.Err }

// Type is the type of a Value.
type Type int

// Value types. libvirt distinguishes signed (VIR_CONF_LLONG) and unsigned
// (VIR_CONF_ULLONG) numbers by whether a '-' was written; here both are Int
// and Value.Signed records the sign.
const (
	String Type = iota + 1
	Int
	List
)

func (t Type) String() string {
	switch t {
	case String:
		return "string"
	case Int:
		return "integer"
	case List:
		return "list"
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// Value is a parsed value.
type Value struct {
	Type Type
	// Str is the contents of a String, without quotes. Strings have no
	// escapes, so these are the bytes between the quotes.
	Str string
	// Int is the value of an Int. An unsigned number above math.MaxInt64
	// (libvirt accepts up to math.MaxUint64) is stored as its two's
	// complement bits; see Uint.
	Int int64
	// Signed is true when the number was written with a leading '-'. libvirt
	// then treats it as signed, which it refuses where it wants a boolean or
	// an unsigned number, even for "-0".
	Signed bool
	// List holds the elements of a List, in order.
	List []Value
}

// Uint returns an unsigned Int as libvirt's virConfGetValueULLong would,
// and false if the number was written with a '-'.
func (v Value) Uint() (uint64, bool) {
	if v.Type != Int || v.Signed {
		return 0, false
	}
	return uint64(v.Int), true
}

// Entry is one "name = value" statement.
type Entry struct {
	Key   string
	Value Value
	Line  int // 1-based line of the name
}

// File is a parsed configuration: its entries in file order. Comments are
// not kept. The zero File has no entries.
type File struct {
	entries []Entry
	first   map[string]int // index in entries of each key's first entry
}

// Parse parses data in libvirt's configuration syntax. Errors are
// *SyntaxError values naming the line, or wrap ErrTooLarge.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxSize)
	}
	p := &parser{data: data}
	f := &File{first: make(map[string]int)}
	for {
		p.skipBlanksAndEOL()
		if p.eof() {
			return f, nil
		}
		if p.cur() == '#' {
			p.skipToEOL()
		} else {
			e, err := p.statement()
			if err != nil {
				return nil, err
			}
			if _, dup := f.first[e.Key]; !dup {
				f.first[e.Key] = len(f.entries)
			}
			f.entries = append(f.entries, e)
		}
		if err := p.separator(); err != nil {
			return nil, err
		}
	}
}

type parser struct {
	data   []byte
	pos    int
	values int // entries and list elements seen, bounded by MaxValues

	// lineOff and lineNo cache the line of an earlier offset, so that
	// numbering entries costs one pass over the input, not one per entry.
	lineOff, lineNo int
}

func (p *parser) eof() bool { return p.pos >= len(p.data) }

// cur returns the current byte, or 0 at the end. Callers that must tell a
// NUL byte from the end check eof first.
func (p *parser) cur() byte {
	if p.eof() {
		return 0
	}
	return p.data[p.pos]
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }
func isEOL(c byte) bool   { return c == '\n' || c == '\r' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

func (p *parser) skipBlanks() {
	for !p.eof() && isBlank(p.data[p.pos]) {
		p.pos++
	}
}

func (p *parser) skipBlanksAndEOL() {
	for !p.eof() && (isBlank(p.data[p.pos]) || isEOL(p.data[p.pos])) {
		p.pos++
	}
}

func (p *parser) skipToEOL() {
	for !p.eof() && !isEOL(p.data[p.pos]) {
		p.pos++
	}
}

// line returns the 1-based line of byte offset off. Offsets asked for only
// grow, except that an error may name an offset before the last entry, so
// the cache restarts from the top when asked to go back.
func (p *parser) line(off int) int {
	off = min(off, len(p.data))
	if off < p.lineOff || p.lineNo == 0 {
		p.lineOff, p.lineNo = 0, 1
	}
	p.lineNo += bytes.Count(p.data[p.lineOff:off], []byte{'\n'})
	p.lineOff = off
	return p.lineNo
}

func (p *parser) errorf(sentinel error, format string, args ...any) error {
	return &SyntaxError{Line: p.line(p.pos), Msg: fmt.Sprintf(format, args...), Err: sentinel}
}

// describe names the current byte for error messages.
func (p *parser) describe() string {
	if p.eof() {
		return "end of file"
	}
	c := p.data[p.pos]
	switch {
	case isEOL(c):
		return "end of line"
	case c >= 0x20 && c < 0x7f:
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (p *parser) count() error {
	p.values++
	if p.values > MaxValues {
		return p.errorf(ErrTooMany, "more than %d values", MaxValues)
	}
	return nil
}

// separator is virConfParseSeparator: the end, a newline or a ';'.
func (p *parser) separator() error {
	p.skipBlanks()
	switch {
	case p.eof():
	case isEOL(p.cur()):
		p.skipBlanksAndEOL()
	case p.cur() == ';':
		p.pos++
		p.skipBlanksAndEOL()
	default:
		return p.errorf(ErrSyntax, "expected end of line or ';', found %s", p.describe())
	}
	return nil
}

// statement is virConfParseStatement for a name = value line; the caller
// has skipped leading blanks and handled standalone comments.
func (p *parser) statement() (Entry, error) {
	start, line := p.pos, p.line(p.pos)
	if !isAlpha(p.cur()) {
		return Entry{}, p.errorf(ErrSyntax, "expected a name, found %s", p.describe())
	}
	for !p.eof() && (isAlpha(p.cur()) || isDigit(p.cur()) || p.cur() == '_') {
		p.pos++
	}
	name := string(p.data[start:p.pos])
	p.skipBlanks()
	if p.eof() || p.cur() != '=' {
		return Entry{}, p.errorf(ErrSyntax, "expected '=' after name %q, found %s", name, p.describe())
	}
	p.pos++
	if err := p.count(); err != nil {
		return Entry{}, err
	}
	v, err := p.value(0)
	if err != nil {
		return Entry{}, err
	}
	p.skipBlanks()
	if !p.eof() && p.cur() == '#' {
		p.skipToEOL()
	}
	return Entry{Key: name, Value: v, Line: line}, nil
}

// value is virConfParseValue.
func (p *parser) value(depth int) (Value, error) {
	p.skipBlanks()
	if p.eof() {
		return Value{}, p.errorf(ErrSyntax, "expected a value, found end of file")
	}
	switch c := p.cur(); {
	case c == '"' || c == '\'':
		s, err := p.str()
		if err != nil {
			return Value{}, err
		}
		return Value{Type: String, Str: s}, nil
	case c == '[':
		return p.list(depth + 1)
	case isDigit(c) || c == '-' || c == '+':
		return p.number()
	case c == '#' && depth > 0:
		return Value{}, p.errorf(ErrSyntax, "expected a value, found a comment (libvirt allows no comments inside a list)")
	default:
		return Value{}, p.errorf(ErrSyntax, "expected a value, found %s", p.describe())
	}
}

// str is virConfParseString.
func (p *parser) str() (string, error) {
	rest := p.data[p.pos:]
	// libvirt only looks for triple quotes when more than six bytes remain,
	// so `x = """"""` at the very end of a file is "" followed by junk.
	// Matching that keeps us from accepting what libvirtd refuses.
	if len(rest) > 6 && bytes.HasPrefix(rest, []byte(`"""`)) {
		end := bytes.Index(rest[3:], []byte(`"""`))
		if end < 0 {
			return "", p.errorf(ErrSyntax, "unterminated triple-quoted string")
		}
		s := string(rest[3 : 3+end])
		p.pos += 3 + end + 3
		return s, nil
	}
	q := p.cur()
	p.pos++
	start := p.pos
	for !p.eof() && p.cur() != q && !isEOL(p.cur()) {
		p.pos++
	}
	if p.eof() || p.cur() != q {
		return "", p.errorf(ErrSyntax, "unterminated string (quoted strings end at the line; use \"\"\" for several lines)")
	}
	s := string(p.data[start:p.pos])
	p.pos++
	return s, nil
}

// number is virConfParseLong. Unlike libvirt it refuses numbers that do
// not fit in 64 bits instead of wrapping them.
func (p *parser) number() (Value, error) {
	v := Value{Type: Int}
	switch p.cur() {
	case '-':
		v.Signed = true
		p.pos++
	case '+':
		p.pos++
	}
	if p.eof() || !isDigit(p.cur()) {
		return Value{}, p.errorf(ErrSyntax, "unterminated number: expected a digit, found %s", p.describe())
	}
	var u uint64
	for !p.eof() && isDigit(p.cur()) {
		d := uint64(p.cur() - '0')
		if u > (math.MaxUint64-d)/10 {
			return Value{}, p.errorf(ErrBadNumber, "number does not fit in 64 bits")
		}
		u = u*10 + d
		p.pos++
	}
	if v.Signed {
		if u > 1<<63 {
			return Value{}, p.errorf(ErrBadNumber, "number below the signed 64-bit range")
		}
		v.Int = int64(-u) // two's complement: also right for -2^63
	} else {
		v.Int = int64(u)
	}
	return v, nil
}

// list parses a list; depth counts the list being opened.
func (p *parser) list(depth int) (Value, error) {
	if depth > MaxDepth {
		return Value{}, p.errorf(ErrTooDeep, "lists nested more than %d deep", MaxDepth)
	}
	open := p.pos
	p.pos++ // '['
	v := Value{Type: List, List: []Value{}}
	p.skipBlanksAndEOL()
	for !p.eof() && p.cur() != ']' {
		if len(v.List) > 0 {
			if p.cur() != ',' {
				if p.cur() == '#' {
					return Value{}, p.errorf(ErrSyntax, "comment inside a list (libvirt allows none)")
				}
				return Value{}, p.errorf(ErrSyntax, "expected ',' or ']' in list, found %s", p.describe())
			}
			p.pos++
			p.skipBlanksAndEOL()
			if !p.eof() && p.cur() == ']' {
				break // trailing comma
			}
		}
		if err := p.count(); err != nil {
			return Value{}, err
		}
		e, err := p.value(depth)
		if err != nil {
			return Value{}, err
		}
		v.List = append(v.List, e)
		p.skipBlanksAndEOL()
	}
	if p.eof() {
		// Name the line of the '[': the end of the file says nothing.
		p.pos = open
		return Value{}, p.errorf(ErrSyntax, "list is not closed with ']'")
	}
	p.pos++ // ']'
	return v, nil
}
