package reclaim

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// DefaultImages is libvirt's default image directory, scanned even when
// no pool names it.
const DefaultImages = "/var/lib/libvirt/images"

// DefaultRoots returns the directories `reclaim` scans when given none:
// the targets of libvirt's directory-backed storage pools defined in
// poolDir (/etc/libvirt/storage/*.xml) and DefaultImages. Pools whose
// volumes are device nodes (logical, disk, iscsi, ...) are left out with a
// note: udev gives device nodes their owners afresh at every boot.
func DefaultRoots(poolDir string) ([]string, []string, error) {
	m, err := filepath.Glob(filepath.Join(poolDir, "*.xml"))
	if err != nil {
		return nil, nil, fmt.Errorf("list pools in %s: %w", poolDir, err)
	}
	sort.Strings(m)
	roots := []string{DefaultImages}
	var notes []string
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err != nil {
			notes = append(notes, fmt.Sprintf("pool %s: %s", p, err))
			continue
		}
		var pool libvirtxml.StoragePool
		if err := pool.Unmarshal(string(b)); err != nil {
			notes = append(notes, fmt.Sprintf("pool %s: %s", p, oneLine(err.Error())))
			continue
		}
		switch {
		case pool.Target == nil || pool.Target.Path == "":
			notes = append(notes, fmt.Sprintf("pool %s (%s): no target path", pool.Name, pool.Type))
		case pool.Type != "dir" && pool.Type != "fs" && pool.Type != "netfs":
			notes = append(notes, fmt.Sprintf("pool %s (%s): not scanned, its volumes are device nodes", pool.Name, pool.Type))
		case !filepath.IsAbs(pool.Target.Path):
			notes = append(notes, fmt.Sprintf("pool %s: target %q is not absolute", pool.Name, pool.Target.Path))
		default:
			roots = append(roots, filepath.Clean(pool.Target.Path))
		}
	}
	return dedup(roots), notes, nil
}

func dedup(ss []string) []string {
	seen := make(map[string]bool)
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
