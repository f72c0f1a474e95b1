package config

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/virconf"
)

// readConf reads and parses a libvirt-syntax file. A missing file is
// reported as an error wrapping fs.ErrNotExist, for the caller to decide.
func readConf(path string) (*virconf.File, error) {
	cf, _, err := readConfRaw(path)
	return cf, err
}

// readConfRaw is readConf that also returns the bytes read.
func readConfRaw(path string) (*virconf.File, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err // *PathError already names the path
	}
	defer func() { _ = f.Close() }() // opened read-only: a close error loses nothing
	// Read one byte past the limit so that an oversized file is refused
	// rather than silently truncated into something that parses.
	// The buffer is sized from fstat, so a 50 KiB qemu.conf is one read,
	// not a dozen growing copies (the file may still change size: the
	// limit, not the size seen, bounds the read).
	buf := bytes.NewBuffer(nil)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() < virconf.MaxSize {
		buf.Grow(int(fi.Size()) + bytes.MinRead)
	}
	_, err = buf.ReadFrom(io.LimitReader(f, virconf.MaxSize+1))
	data := buf.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	cf, err := virconf.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return cf, data, nil
}
