package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
)

// commands an admin runs by hand; anything else with four arguments is
// libvirtd calling the hook.
var commands = map[string]func(*env, []string) error{
	"plan":        cmdPlan,
	"grant":       cmdGrant,
	"revoke":      cmdRevoke,
	"watch":       cmdWatch,
	"status":      cmdStatus,
	"restore":     cmdRestore,
	"doctor":      cmdDoctor,
	"boot":        cmdBoot,
	"forget-host": cmdForgetHost,
	"reclaim":     cmdReclaim,
	"version":     cmdVersion,
	"help":        cmdHelp,
}

// libvirtOps are the operations libvirtd passes as the second argument.
var libvirtOps = map[string]bool{
	"prepare": true, "start": true, "started": true, "stopped": true, "release": true,
	"migrate": true, "restore": true, "reconnect": true, "attach": true,
}

type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

const usage = `Usage:
  libvirt-dac-hook DOMAIN OPERATION SUB-OPERATION EXTRA   (as libvirtd runs /etc/libvirt/hooks/qemu; domain XML on stdin)
  libvirt-dac-hook plan [--json] [--op prepare|release] [--as USER:GROUP] [FILE|-]
  libvirt-dac-hook grant [--format FMT] DOMAIN PATH...   (hand files to a running domain before hot-plugging them)
  libvirt-dac-hook revoke DOMAIN PATH...                 (give them back early, after detaching)
  libvirt-dac-hook status [--json] [--state-file FILE]
  libvirt-dac-hook restore (--stale | --domain NAME | --all | --state-file FILE)
  libvirt-dac-hook doctor [--json] [--fix] [DOMAIN-XML|-]
  libvirt-dac-hook reclaim [--dry-run] [--json] [--owner USER:GROUP] [PATH...]
  libvirt-dac-hook boot [--lock-timeout DURATION]          (run by libvirt-dac-hook-boot.service)
  libvirt-dac-hook forget-host HOSTID                     (a host that died holding files on shared storage, for good)
  libvirt-dac-hook watch                                  (the watcher of cooperative mode, run by libvirt-dac-hook-watch.service)
  libvirt-dac-hook version [--marker]
  libvirt-dac-hook help

Hook mode: "prepare" gives every host file the domain needs to the user QEMU runs
as and records the original owners; "start begin" checks that the chains libvirt
found are the ones prepare checked; "release" gives them back. Every other
operation exits 0 at once. Nothing is ever written to stdout in hook mode.

Configuration: /etc/libvirt/libvirt-dac-hook.conf (libvirt syntax), or the file
named by $LIBVIRT_DAC_HOOK_CONFIG. $LIBVIRT_DAC_HOOK_DRY_RUN=1 logs what hook mode
would do and changes nothing.

`

// Main runs the program and returns its exit code. main calls it and exits,
// so every deferred unlock and rollback below has run by then.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	a := args[1:]
	if isHookCall(a) {
		return runHook(e, a)
	}
	if len(a) == 0 {
		// A failed write to stderr leaves nowhere to report it; the exit
		// code still says the call was wrong.
		_, _ = fmt.Fprint(stderr, usage+exitHelp)
		return ExitUsage
	}
	name := a[0]
	if name == "-h" || name == "--help" || name == "-help" {
		if _, err := fmt.Fprint(stdout, usage+exitHelp); err != nil {
			// Asked-for output that did not arrive is a failure; stderr is
			// the last place to say so.
			_, _ = fmt.Fprintf(stderr, "libvirt-dac-hook: write help: %s\n", domain.OneLine(err.Error()))
			return ExitFailed
		}
		return ExitOK
	}
	if name == "--version" {
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		// Nowhere is left to report a failed write of this message.
		_, _ = fmt.Fprintf(stderr, "libvirt-dac-hook: unknown command %q (libvirtd calls the hook with exactly 4 arguments)\n%s", name, usage)
		return ExitUsage
	}
	err := cmd(e, a[1:])
	if errors.Is(err, errHelpShown) {
		return ExitOK
	}
	if err != nil {
		// Nowhere is left to report a failed write of the error itself;
		// the exit code still carries it.
		_, _ = fmt.Fprintf(stderr, "libvirt-dac-hook %s: %s\n", name, domain.OneLine(err.Error()))
	}
	return exitCode(err)
}

// isHookCall tells libvirtd's calls from an admin's. libvirtd always passes
// exactly four arguments; a domain may be called "plan", so a command name
// first still means hook mode when the second argument is a libvirt
// operation.
func isHookCall(a []string) bool {
	if len(a) != 4 {
		return false
	}
	if _, isCmd := commands[a[0]]; !isCmd && !strings.HasPrefix(a[0], "-") {
		return true
	}
	return libvirtOps[a[1]]
}
