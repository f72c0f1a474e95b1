package inventory

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// dirName is the directory of the records inside the state directory.
const dirName = "inventory"

// openDir opens STATE_DIR/inventory without following a link at either
// level, creating it (0700) when create is set.
func openDir(stateDir string, create bool) (int, error) {
	if create {
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			return -1, err
		}
	}
	sfd, err := unix.Open(stateDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: stateDir, Err: err}
	}
	defer func() { _ = unix.Close(sfd) }() // a directory opened to look up one entry
	if create {
		if err := unix.Mkdirat(sfd, dirName, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, &os.PathError{Op: "mkdir", Path: filepath.Join(stateDir, dirName), Err: err}
		}
	}
	fd, err := unix.Openat(sfd, dirName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: filepath.Join(stateDir, dirName), Err: err}
	}
	return fd, nil
}

const tmpPrefix = ".tmp-"

// writeDurable replaces name in STATE_DIR/inventory with b so that after a
// crash at any point the name holds the old bytes or the new ones, whole:
// a temporary file written and fsynced, renamed over name, the directory
// fsynced. No component is followed if it is a link. create says whether
// the inventory directory may be made (a watcher never makes it again
// once removed: the state directory was uninstalled).
func writeDurable(stateDir, name string, b []byte, create bool) error {
	dfd, err := openDir(stateDir, create)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	defer func() { _ = unix.Close(dfd) }() // fsynced below where it matters
	removeDebris(dfd)
	tmp := tmpPrefix + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(os.Getpid())
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("inventory: create %s: %w", tmp, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("inventory: write %s: %w", name, err)
	}
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("inventory: rename to %s: %w", name, err)
	}
	if err := unix.Fsync(dfd); err != nil {
		return fmt.Errorf("inventory: fsync directory: %w", err)
	}
	return nil
}

// readFile reads name in STATE_DIR/inventory, at most maxSize bytes,
// following no link. A missing file (or directory) is fs.ErrNotExist.
func readFile(stateDir, name string) ([]byte, error) {
	dfd, err := openDir(stateDir, false)
	if err != nil {
		return nil, err
	}
	defer func() { _ = unix.Close(dfd) }() // read only
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(stateDir, dirName, name), Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer func() { _ = f.Close() }() // read only
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", filepath.Join(stateDir, dirName, name))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSize {
		return nil, fmt.Errorf("%s: more than %d bytes", filepath.Join(stateDir, dirName, name), maxSize)
	}
	return b, nil
}

// removeFile deletes name in STATE_DIR/inventory (never what a link
// points to) and makes the removal durable; a missing file is no error.
func removeFile(stateDir, name string) error {
	dfd, err := openDir(stateDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	defer func() { _ = unix.Close(dfd) }()
	if err := unix.Unlinkat(dfd, name, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("inventory: remove %s: %w", name, err)
	}
	if err := unix.Fsync(dfd); err != nil {
		return fmt.Errorf("inventory: fsync directory: %w", err)
	}
	return nil
}

// removeDebris deletes temporary files older than a minute: a writer that
// old was killed before its rename.
func removeDebris(dfd int) {
	for _, n := range namesAt(dfd) {
		if !strings.HasPrefix(n, tmpPrefix) {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(dfd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && time.Since(time.Unix(st.Mtim.Unix())) > time.Minute {
			_ = unix.Unlinkat(dfd, n, 0)
		}
	}
}

// namesAt lists the entries of an open directory, leaving dfd as it was.
func namesAt(dfd int) []string {
	fd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), ".")
	defer func() { _ = f.Close() }() // a directory read from
	names, _ := f.Readdirnames(-1)
	return names
}

// MakeDir makes STATE_DIR/inventory (0700) when missing; a link there is
// an error.
func MakeDir(stateDir string) error {
	fd, err := openDir(stateDir, true)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return unix.Close(fd)
}
