package virconf

import (
	"errors"
	"fmt"
)

// ErrType is wrapped by the typed getters when a key holds a value of the
// wrong type or range.
var ErrType = errors.New("wrong type")

// Entries returns a copy of the entries in file order, duplicates included.
func (f *File) Entries() []Entry {
	return append([]Entry(nil), f.entries...)
}

// Lookup returns the first entry named key, the one libvirt uses: later
// entries with the same name are ignored, as virConfGetValue ignores them.
func (f *File) Lookup(key string) (Entry, bool) {
	if f.first != nil {
		i, ok := f.first[key]
		if !ok {
			return Entry{}, false
		}
		return f.entries[i], true
	}
	// A File built by hand rather than by Parse has no index.
	for _, e := range f.entries {
		if e.Key == key {
			return e, true
		}
	}
	return Entry{}, false
}

func typeError(e Entry, format string, args ...any) error {
	return fmt.Errorf("line %d: %s: %s: %w", e.Line, e.Key, fmt.Sprintf(format, args...), ErrType)
}

// String returns the string value of key. ok is false when key is not set;
// a value of another type is an error naming the key and its line.
func (f *File) String(key string) (s string, ok bool, err error) {
	e, ok := f.Lookup(key)
	if !ok {
		return "", false, nil
	}
	if e.Value.Type != String {
		return "", true, typeError(e, "expected a string, got %s", e.Value.Type)
	}
	return e.Value.Str, true, nil
}

// Bool returns the boolean value of key the way libvirt's
// virConfGetValueBool does: the number 0 or 1, written without '-'.
func (f *File) Bool(key string) (b bool, ok bool, err error) {
	e, ok := f.Lookup(key)
	if !ok {
		return false, false, nil
	}
	u, unsigned := e.Value.Uint()
	if !unsigned {
		return false, true, typeError(e, "expected 0 or 1, got %s", describe(e.Value))
	}
	if u > 1 {
		return false, true, typeError(e, "expected 0 or 1, got %d", u)
	}
	return u == 1, true, nil
}

// Int returns the integer value of key. Unsigned numbers above
// math.MaxInt64 are out of range.
func (f *File) Int(key string) (n int64, ok bool, err error) {
	e, ok := f.Lookup(key)
	if !ok {
		return 0, false, nil
	}
	if e.Value.Type != Int {
		return 0, true, typeError(e, "expected an integer, got %s", e.Value.Type)
	}
	if !e.Value.Signed && e.Value.Int < 0 {
		return 0, true, typeError(e, "%d is out of range", uint64(e.Value.Int))
	}
	return e.Value.Int, true, nil
}

// Strings returns a list of strings, or a single string as a one-element
// list (libvirt's virConfGetValueStringList with compatString). An empty
// list gives an empty, non-nil slice.
func (f *File) Strings(key string) (list []string, ok bool, err error) {
	e, ok := f.Lookup(key)
	if !ok {
		return nil, false, nil
	}
	switch e.Value.Type {
	case String:
		return []string{e.Value.Str}, true, nil
	case List:
		list = make([]string, 0, len(e.Value.List))
		for i, v := range e.Value.List {
			if v.Type != String {
				return nil, true, typeError(e, "expected a list of strings, element %d is %s", i+1, describe(v))
			}
			list = append(list, v.Str)
		}
		return list, true, nil
	}
	return nil, true, typeError(e, "expected a string or list of strings, got %s", e.Value.Type)
}

// describe names a value for error messages without echoing long strings.
func describe(v Value) string {
	switch v.Type {
	case Int:
		if v.Signed {
			return fmt.Sprintf("%d", v.Int)
		}
		return fmt.Sprintf("%d", uint64(v.Int))
	case String:
		if len(v.Str) <= 40 {
			return fmt.Sprintf("string %q", v.Str)
		}
		return "a string"
	}
	return v.Type.String()
}
