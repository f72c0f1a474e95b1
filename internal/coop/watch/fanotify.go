package watch

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fanInitFlags: FIDs (file handles) of the object and of its directory
// with the entry's name, the pidfd of the process that caused the event,
// and a queue without a bound: a root listener's queue never overflows,
// whatever an unprivileged user does to their own files.
const fanInitFlags = unix.FAN_CLASS_NOTIF | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK |
	unix.FAN_UNLIMITED_QUEUE | unix.FAN_UNLIMITED_MARKS |
	unix.FAN_REPORT_FID | unix.FAN_REPORT_DFID_NAME | unix.FAN_REPORT_PIDFD

// fanEvents are the events followed: an owner change (ATTRIB), and a
// file appearing in a directory (made, or renamed into it).
const fanEvents = unix.FAN_ATTRIB | unix.FAN_CREATE | unix.FAN_MOVED_TO

func fanInit() (int, error) {
	fd, err := unix.FanotifyInit(fanInitFlags, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fanotify_init: %w", err)
	}
	return fd, nil
}

// markDir marks the directory dirfd holds for the events of its entries.
// A mark on the directory, not on its whole filesystem: a filesystem mark
// on / would make every change on the host's root filesystem an event
// for the watcher to read and judge, and the directories the records name
// are all it follows.
func markDir(fan, dirfd int) error {
	if err := unix.FanotifyMark(fan, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, fanEvents|unix.FAN_EVENT_ON_CHILD, dirfd, ""); err != nil {
		return fmt.Errorf("fanotify mark: %w", err)
	}
	return nil
}

func unmarkDir(fan, dirfd int) {
	_ = unix.FanotifyMark(fan, unix.FAN_MARK_REMOVE|unix.FAN_MARK_ONLYDIR, fanEvents|unix.FAN_EVENT_ON_CHILD, dirfd, "")
}

// fid is a file handle on a filesystem, as fanotify reports it.
type fid struct {
	fsid   [2]int32
	typ    int32
	handle []byte
}

// key is a map key for the inode: filesystem and handle (which, on
// filesystems that keep one, holds the inode's generation).
func (f fid) key() string {
	b := make([]byte, 12, 12+len(f.handle))
	binary.LittleEndian.PutUint32(b[0:], uint32(f.fsid[0]))
	binary.LittleEndian.PutUint32(b[4:], uint32(f.fsid[1]))
	binary.LittleEndian.PutUint32(b[8:], uint32(f.typ))
	return string(append(b, f.handle...))
}

// event is one fanotify event of a FID group.
type event struct {
	mask  uint64
	pidfd int
	// pid is the process's id as the event's metadata gives it.
	pid int32
	// dir and name: the directory entry (DFID_NAME); obj: the object.
	dir, obj fid
	name     string
	hasDir   bool
	hasObj   bool
	// who made the change, judged when the event was read.
	who Changer
}

const (
	metaLen    = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))
	infoHdrLen = 4
)

// parse splits a read buffer into events. Malformed records end the
// buffer (the kernel never writes them); every pidfd parsed is returned
// in its event, for the caller to close.
func parse(buf []byte) []event {
	var out []event
	for len(buf) >= metaLen {
		m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[0]))
		n := int(m.Event_len)
		if n < metaLen || n > len(buf) || int(m.Metadata_len) < metaLen || int(m.Metadata_len) > n {
			break
		}
		ev := event{mask: m.Mask, pidfd: -1, pid: m.Pid}
		info := buf[int(m.Metadata_len):n]
		for len(info) >= infoHdrLen {
			typ, l := info[0], int(binary.NativeEndian.Uint16(info[2:4]))
			if l < infoHdrLen || l > len(info) {
				break
			}
			rec := info[:l]
			switch typ {
			case unix.FAN_EVENT_INFO_TYPE_PIDFD:
				if len(rec) >= 8 {
					ev.pidfd = int(int32(binary.NativeEndian.Uint32(rec[4:8])))
				}
			case unix.FAN_EVENT_INFO_TYPE_FID:
				if f, _, ok := parseFid(rec); ok {
					ev.obj, ev.hasObj = f, true
				}
			case unix.FAN_EVENT_INFO_TYPE_DFID_NAME:
				if f, rest, ok := parseFid(rec); ok {
					ev.dir, ev.hasDir = f, true
					ev.name = cstring(rest)
				}
			}
			info = info[l:]
		}
		out = append(out, ev)
		buf = buf[n:]
	}
	return out
}

// parseFid reads struct fanotify_event_info_fid: header, fsid, then a
// struct file_handle (handle_bytes, handle_type, f_handle).
func parseFid(rec []byte) (fid, []byte, bool) {
	const off = infoHdrLen + 8
	if len(rec) < off+8 {
		return fid{}, nil, false
	}
	f := fid{
		fsid: [2]int32{int32(binary.NativeEndian.Uint32(rec[4:8])), int32(binary.NativeEndian.Uint32(rec[8:12]))},
		typ:  int32(binary.NativeEndian.Uint32(rec[off+4 : off+8])),
	}
	hb := int(binary.NativeEndian.Uint32(rec[off : off+4]))
	if hb > len(rec)-off-8 {
		return fid{}, nil, false
	}
	f.handle = append([]byte(nil), rec[off+8:off+8+hb]...)
	return f, rec[off+8+hb:], true
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// fidOf takes the file handle of name in the directory dirfd ("" for
// dirfd itself), in the form fanotify reports it.
func fidOf(dirfd int, name string, fsid [2]int32) (fid, error) {
	flags := 0
	if name == "" {
		flags = unix.AT_EMPTY_PATH
	}
	fh, _, err := unix.NameToHandleAt(dirfd, name, flags)
	if err != nil {
		return fid{}, err
	}
	return fid{fsid: fsid, typ: fh.Type(), handle: append([]byte(nil), fh.Bytes()...)}, nil
}

// fsidOf reads the filesystem id of an open file, as fanotify reports it.
func fsidOf(fd int) ([2]int32, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return [2]int32{}, err
	}
	return st.Fsid.Val, nil
}
