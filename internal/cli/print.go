package cli

import (
	"fmt"
	"io"
)

// printer writes a command's output and keeps the first write error, so a
// report of many lines is checked once, at the end, instead of at every
// line: a closed stdout (`| head`) still ends the command with an error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, a ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, a...)
	}
}

func (p *printer) println(a ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintln(p.w, a...)
	}
}

// flush ends the output: it flushes w when it buffers (a tabwriter) and
// returns the first error.
func (p *printer) flush() error {
	if f, ok := p.w.(interface{ Flush() error }); ok && p.err == nil {
		p.err = f.Flush()
	}
	return p.err
}
