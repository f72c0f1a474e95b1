package logsink

import "strings"

// Message IDs: one per kind of event, so `journalctl MESSAGE_ID=...` finds
// every event of a kind whatever its wording becomes. They are random
// 128-bit ids, fixed forever once released; the man page
// (install/libvirt-dac-hook.8) lists them.
const (
	MsgChown             = "4c2ab2fb3a26493fb492cf3a6a804aee"
	MsgACLAdded          = "fa0d0499b6cb4099ae8fb070dbf44557"
	MsgACLRemoved        = "4728f05917b3442289ab73fed670a194"
	MsgPrepareRefused    = "2e40ad9024d44cea91c84fa871ffb3f6"
	MsgPrepareFailed     = "5c8ce4ee4bdd4bd0a6a051e736a2cc77"
	MsgReleaseIncomplete = "3d6014bb1d3a4c15bdebe8eab2def54f"
	MsgGone              = "9b740ee4c8234adc974c790c5925b48f"
	MsgLeftAlone         = "19776f9215dc407e891954b27a297b1f"
	MsgDryRun            = "e9ab2dea74f940ac98224843be9c8622"
	MsgMigrated          = "392267f4b9ed4e158b4b505e0369f78f"
	MsgBootRestore       = "b0a69d17bf9c44e288faba0c004a76c2"
	MsgACLMaskWidened    = "e0fc3af35a5b4044b1b235d1b27fd1bd"
	MsgReclaim           = "5071ef24075c48e4905f49c9fd24889e"
	MsgReclaimFailed     = "e8307c477b8c4dd39905e573c41b0a4f"
	MsgPermsRestored     = "1e3c539e0c914d23a753e1cb6f97d6fe"
)

// messageIDs maps the fixed messages the hook logs to their kind (fields
// carry the variable part).
var messageIDs = map[string]string{
	"chown":              MsgChown,
	"acl added":          MsgACLAdded,
	"acl removed":        MsgACLRemoved,
	"prepare refused":    MsgPrepareRefused,
	"prepare failed":     MsgPrepareFailed,
	"release incomplete": MsgReleaseIncomplete,
	"release of files labelled during the run incomplete":                                     MsgReleaseIncomplete,
	"the ACL mask gained x, which also lets these entries search the directory until release": MsgACLMaskWidened,
	// apply.BootSummary and reclaim.Summary, written out so that the
	// sinks depend on nothing they log (a test holds them equal).
	"boot: gave back stale records":                  MsgBootRestore,
	"reclaim: gave back files left with QEMU's user": MsgReclaim,
	"reclaim failed":                                 MsgReclaimFailed,
	"mode and ACL put back":                          MsgPermsRestored,
}

// messageRules give a kind to messages release words per file ("path now
// names another file (inode ...): replaced or moved; left alone").
var messageRules = []struct {
	prefix, suffix, id string
}{
	{"dry run: ", "", MsgDryRun},
	{"", "; nothing to restore", MsgGone},
	{"", "left alone", MsgLeftAlone},
	{"migrated", "", MsgMigrated},
	{"still open by a running QEMU", "left with its owner", MsgLeftAlone},
	{"on a filesystem shared between hosts", "", MsgLeftAlone},
}

// messageID returns the kind of a message, "" for one without.
func messageID(msg string) string {
	if id, ok := messageIDs[msg]; ok {
		return id
	}
	for _, r := range messageRules {
		if strings.HasPrefix(msg, r.prefix) && strings.HasSuffix(msg, r.suffix) {
			return r.id
		}
	}
	return ""
}
