package owner

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Link is one symlink Open followed on the way to the final target.
type Link struct {
	// Path is where the symlink is: its directory resolved, absolute,
	// clean, with no symlinks.
	Path string
	// Target is the symlink's content as read.
	Target string
	// UID owns the symlink.
	UID uint32
}

// maxLinks is the kernel's MAXSYMLINKS: more symlinks than this in one
// resolution is ELOOP.
const maxLinks = 40

// errTreeChanged marks a resolution that met a tree changing under it; Open
// starts over.
var errTreeChanged = errors.New("tree changed during resolution")

// resolve turns an absolute path into the path of its final target with no
// symlinks in it, the way the kernel would resolve it, and records every
// symlink followed.
//
// It does not use filepath.EvalSymlinks because that reads links by name
// and says nothing about who owns them; Policy.Check needs to know, since
// a link planted by a user is how that user points the hook at a file that
// is not theirs (fs.protected_symlinks is not consulted for root's
// userspace resolution). Each component is opened O_PATH|O_NOFOLLOW with
// openat2 refusing symlinks on the way, so the owner and the content of a
// link come from the same inode, and a directory swapped for a symlink
// mid-walk fails the walk rather than being followed unrecorded.
//
// ".." is taken lexically on the resolved prefix, which holds no symlinks,
// so "dir/link/.." is the parent of the link's target, as in the kernel.
func resolve(path string) (string, []Link, error) {
	var links []Link
	resolved, isDir := "/", true
	rest := path
	for rest != "" {
		var c string
		rest = strings.TrimLeft(rest, "/")
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			c, rest = rest[:i], rest[i:]
		} else {
			c, rest = rest, ""
		}
		if !isDir {
			// "file/.", "file/.." and "file/" are ENOTDIR, as is
			// "file/x" (which the open below would also say).
			return "", nil, fmt.Errorf("%s: %w", resolved, unix.ENOTDIR)
		}
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = parentOf(resolved)
			continue
		}
		next := joinResolved(resolved, c)
		target, uid, mode, err := readComponent(next)
		if err != nil {
			return "", nil, err
		}
		if mode != unix.S_IFLNK {
			resolved, isDir = next, mode == unix.S_IFDIR
			continue
		}
		if len(links) == maxLinks {
			return "", nil, fmt.Errorf("more than %d symlinks, the last at %s: %w", maxLinks, next, unix.ELOOP)
		}
		if target == "" {
			// The kernel refuses to follow an empty symlink.
			return "", nil, fmt.Errorf("%s is an empty symlink: %w", next, unix.ENOENT)
		}
		links = append(links, Link{Path: next, Target: target, UID: uid})
		if strings.HasPrefix(target, "/") {
			resolved = "/"
		}
		// rest is empty or starts with "/"; no slash is added after a
		// final link, which would demand a directory.
		rest = target + rest
	}
	return resolved, links, nil
}

func parentOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func joinResolved(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// readComponent opens p (whose directories hold no symlinks) without
// following anything and reports its type (S_IFMT bits); for a symlink
// also its content and owner, read through the same descriptor.
func readComponent(p string) (target string, uid uint32, mode uint32, err error) {
	fd, err := openNoFollow(p)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EXDEV) {
		// A directory of p became a symlink (or was renamed) since
		// it was resolved.
		return "", 0, 0, fmt.Errorf("open %s: %w: %w", p, errTreeChanged, err)
	}
	if err != nil {
		return "", 0, 0, fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", 0, 0, fmt.Errorf("fstat %s: %w", p, err)
	}
	mode = st.Mode & unix.S_IFMT
	if mode != unix.S_IFLNK {
		return "", 0, mode, nil
	}
	// A symlink's content cannot change once made, so what is read here
	// belongs to the owner just seen. Symlink targets are at most
	// PATH_MAX bytes.
	buf := make([]byte, unix.PathMax+1)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", 0, 0, fmt.Errorf("readlink %s: %w", p, err)
	}
	if n > unix.PathMax {
		return "", 0, 0, fmt.Errorf("readlink %s: %w", p, unix.ENAMETOOLONG)
	}
	return string(buf[:n]), st.Uid, mode, nil
}

// openNoFollow opens p O_PATH|O_NOFOLLOW, refusing symlinks in its
// directories; when p itself is a symlink the descriptor is the symlink.
func openNoFollow(p string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, p, &how)
	if errors.Is(err, unix.ENOSYS) {
		return walkOpen(p, true)
	}
	return fd, err
}

// walkOpen is the fallback for kernels without openat2 (< 5.6): it walks
// the path one component at a time with O_NOFOLLOW, so a symlink in a
// directory makes it fail just as RESOLVE_NO_SYMLINKS would. A symlink as
// the last component is returned when finalLink is set, ELOOP otherwise.
func walkOpen(p string, finalLink bool) (int, error) {
	dir, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	parts := splitPath(p)
	for i, name := range parts {
		last := i == len(parts)-1
		next, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(dir)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return -1, err
		}
		switch mode := st.Mode & unix.S_IFMT; {
		case mode == unix.S_IFLNK && !(last && finalLink):
			unix.Close(next)
			return -1, unix.ELOOP
		case !last && mode != unix.S_IFDIR:
			unix.Close(next)
			return -1, unix.ENOTDIR
		}
		dir = next
	}
	return dir, nil
}
