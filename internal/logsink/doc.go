// Package logsink is where the hook's log entries go: journald in its
// native protocol (syslog on /dev/log where journald is absent), the
// optional log_file, and stderr when run by hand. New builds the one
// logger a process uses.
//
// It exists so that every sink formats an entry the same way: one
// quoting formatter (lineFormatter) for every line of text, so a newline
// or a "key=value" in a path an image header gave cannot forge a line or
// a field in any of them. journald also gets each logrus field as a
// journal field (DOMAIN, OP, PATH, FROM, TO, and FROM_UID, ... split from
// an owner) and a MESSAGE_ID per kind of event, from the one table of the
// messages the hook logs (messageid.go), whose ids the man page lists and
// never change.
//
// Every sink is non-blocking and best-effort: a log daemon that is gone
// or stuck drops entries rather than failing or hanging the hook, and
// libvirtd with it. Nothing here writes to stdout.
package logsink
