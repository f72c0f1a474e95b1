package config

import (
	"bufio"
	"os"
	"strings"
	"sync"
)

// groupFiles are the account databases GroupOthers reads; tests point
// them elsewhere.
var groupFiles = struct{ group, passwd string }{"/etc/group", "/etc/passwd"}

// GroupOthers reports whether accounts other than uid belong to group gid:
// as a listed member in the group file, or by having it as their primary
// group. Only the files are read (the hook is static, without NSS); when
// they cannot be read the answer is true, the careful one.
func GroupOthers(gid, uid uint32) bool {
	// One hook call asks for many images of the same owner: read the
	// account files once per question.
	k := [2]uint32{gid, uid}
	membersMu.Lock()
	defer membersMu.Unlock()
	if v, ok := membersCache[k]; ok {
		return v
	}
	v := groupOthers(gid, uid)
	membersCache[k] = v
	return v
}

var (
	membersMu    sync.Mutex
	membersCache = map[[2]uint32]bool{}
)

func groupOthers(gid, uid uint32) bool {
	self := ""
	others := false
	scan(groupFiles.passwd, func(f []string) {
		if len(f) < 4 {
			return
		}
		u, uok := parseID(f[2])
		g, gok := parseID(f[3])
		if uok && u == uid {
			self = f[0]
		}
		if uok && gok && g == gid && u != uid {
			others = true
		}
	})
	if others {
		return true
	}
	found := false
	scan(groupFiles.group, func(f []string) {
		if len(f) < 4 {
			return
		}
		if g, ok := parseID(f[2]); !ok || g != gid {
			return
		}
		found = true
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" && m != self {
				others = true
			}
		}
	})
	return others || !found && !readable(groupFiles.group)
}

func readable(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	_ = f.Close() // read-only
	return true
}

// scan calls line with the colon-separated fields of each line of p.
func scan(p string, line func([]string)) {
	f, err := os.Open(p)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }() // read-only
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		t := sc.Text()
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		line(strings.Split(t, ":"))
	}
}
