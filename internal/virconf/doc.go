// Package virconf parses libvirt's configuration file syntax, the one used by
// /etc/libvirt/qemu.conf and by this project's own configuration file.
//
// The grammar follows libvirt's src/util/virconf.c (the default flavour, not
// the VMX or LXC ones):
//
//	file      = { statement separator }
//	statement = comment | name blanks "=" blanks value blanks [ comment ]
//	separator = end of file | newline | ";"
//	name      = ASCII letter { ASCII letter | digit | "_" }
//	value     = string | number | list
//	string    = "'" ... "'" | '"' ... '"' | '"""' ... '"""'
//	number    = [ "+" | "-" ] digit { digit }
//	list      = "[" [ value { "," value } [ "," ] ] "]"
//	comment   = "#" ... end of line
//
// Single and double quoted strings end at the line; they have no escapes.
// Triple quoted strings may span lines. Lists may span lines but, as in
// libvirt, may not contain comments. When a name appears more than once, the
// first occurrence wins (virConfGetValue walks the entries in order and
// returns the first match), so appending "user = ..." to a file whose active
// line is earlier does not change anything.
//
// Deliberate differences from libvirt, all on input libvirt handles badly:
// a file that is empty or only blank is accepted (libvirt reports "expecting a
// name"); a number outside the unsigned 64-bit range is an error (libvirt
// silently wraps); input larger than [MaxSize] and lists nested deeper than
// [MaxDepth] are refused.
//
// The package only parses bytes; reading files and deciding what a key
// means is the caller's business (see the config package).
package virconf
