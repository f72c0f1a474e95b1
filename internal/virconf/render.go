package virconf

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnrepresentable is returned by Render for a File that no input could
// produce: an invalid name, or a string no quoting style can hold.
var ErrUnrepresentable = errors.New("not representable in libvirt syntax")

// Render writes f back in libvirt syntax, one entry per line, quoting
// strings the way libvirt's virConfSaveValue does. Parse(Render(f)) yields
// the same entries (line numbers aside). Comments are not kept by Parse and
// so are not written.
func (f *File) Render() ([]byte, error) {
	var b bytes.Buffer
	for _, e := range f.entries {
		if !validName(e.Key) {
			return nil, fmt.Errorf("name %q: %w", e.Key, ErrUnrepresentable)
		}
		b.WriteString(e.Key)
		b.WriteString(" = ")
		if err := renderValue(&b, e.Value, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Key, err)
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

func validName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

func renderValue(b *bytes.Buffer, v Value, depth int) error {
	switch v.Type {
	case Int:
		if v.Signed {
			// "-0" must stay signed for Bool to keep refusing it.
			b.WriteByte('-')
			b.WriteString(strconv.FormatUint(-uint64(v.Int), 10))
		} else {
			b.WriteString(strconv.FormatUint(uint64(v.Int), 10))
		}
	case String:
		return renderString(b, v.Str)
	case List:
		if depth+1 > MaxDepth {
			return fmt.Errorf("lists nested more than %d deep: %w", MaxDepth, ErrUnrepresentable)
		}
		b.WriteString("[ ")
		for i, e := range v.List {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := renderValue(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteString(" ]")
	default:
		return fmt.Errorf("value of type %s: %w", v.Type, ErrUnrepresentable)
	}
	return nil
}

func renderString(b *bytes.Buffer, s string) error {
	multiline := strings.ContainsAny(s, "\r\n")
	switch {
	case !multiline && !strings.Contains(s, `"`):
		b.WriteString(`"` + s + `"`)
	case !multiline && !strings.Contains(s, `'`):
		b.WriteString(`'` + s + `'`)
	case !strings.Contains(s, `"""`) && !strings.HasSuffix(s, `"`):
		// A trailing '"' would merge with the closing quotes.
		b.WriteString(`"""` + s + `"""`)
	default:
		return fmt.Errorf("string %q: %w", s, ErrUnrepresentable)
	}
	return nil
}
