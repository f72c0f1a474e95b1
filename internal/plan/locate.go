package plan

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/domain"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/image"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/owner"
	"github.com/libvirt-dac-hook/libvirt-dac-hook/internal/sysfs"
)

// locate finds the host path(s) of r and what the inode there must be.
func (b *builder) locate(r *domain.Resource) ([]string, owner.Want, error) {
	want := owner.Want{Types: r.Expect, Kind: r.Kind}
	if want.Types == 0 {
		want.Types = domain.TypeRegular
	}
	var dev sysfs.Device
	var err error
	switch {
	case r.Path != "":
		if r.Kind.PipePair() {
			return pipePaths(r.Path), want, nil
		}
		return []string{r.Path}, want, nil
	case r.USB != nil:
		dev, err = b.env.Sys.USB(r.USB.Bus, r.USB.Device, r.USB.Vendor, r.USB.Product)
	case r.SCSI != nil:
		dev, err = b.env.Sys.SCSIGeneric(r.SCSI.Adapter, r.SCSI.Bus, r.SCSI.Target, r.SCSI.Unit)
	case r.PCI != "":
		dev, err = b.env.Sys.PCIGroup(r.PCI)
	case r.Mdev != "":
		dev, err = b.env.Sys.MdevGroup(r.Mdev)
	case r.Volume != nil:
		p, err := b.volumePath(r.Volume)
		if err != nil {
			return nil, want, err
		}
		return []string{p}, want, nil
	default:
		return nil, want, fmt.Errorf("resource names no host file")
	}
	if errors.Is(err, sysfs.ErrNotFound) {
		return nil, want, fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	if err != nil {
		return nil, want, err
	}
	if dev.Major != 0 || dev.Minor != 0 {
		want.Rdev = unix.Mkdev(dev.Major, dev.Minor)
	}
	return []string{dev.Path}, want, nil
}

// pipePaths mirrors QEMU's pipe chardev: it opens PATH.in and PATH.out when
// both exist, else PATH itself.
func pipePaths(p string) []string {
	in, out := p+".in", p+".out"
	if _, err := os.Lstat(in); err == nil {
		if _, err := os.Lstat(out); err == nil {
			return []string{in, out}
		}
	}
	return []string{p}
}

// volumePath resolves a pool volume from the pool's persistent definition,
// as libvirt would, without asking libvirt.
func (b *builder) volumePath(v *domain.VolumeRef) (string, error) {
	if !validName(v.Pool) || !validName(v.Volume) {
		return "", fmt.Errorf("invalid pool or volume name %q/%q", v.Pool, v.Volume)
	}
	pf := filepath.Join(b.env.PoolDir, v.Pool+".xml")
	data, err := os.ReadFile(pf)
	if err != nil {
		return "", fmt.Errorf("storage pool %s: %w", v.Pool, err)
	}
	var pool libvirtxml.StoragePool
	if err := pool.Unmarshal(string(data)); err != nil {
		return "", fmt.Errorf("storage pool %s: parse %s: %w", v.Pool, pf, err)
	}
	switch pool.Type {
	case "dir", "fs", "netfs":
		if pool.Target == nil || !filepath.IsAbs(pool.Target.Path) {
			return "", fmt.Errorf("storage pool %s (%s) has no absolute target path", v.Pool, pf)
		}
		return filepath.Join(filepath.Clean(pool.Target.Path), v.Volume), nil
	case "logical":
		vg := v.Pool
		if pool.Source != nil && pool.Source.Name != "" {
			vg = pool.Source.Name
		}
		if !validName(vg) {
			return "", fmt.Errorf("storage pool %s: invalid volume group %q", v.Pool, vg)
		}
		return filepath.Join("/dev", vg, v.Volume), nil
	default:
		return "", fmt.Errorf("storage pool %s is of type %q, which the hook does not support (only dir, fs, netfs and logical)", v.Pool, pool.Type)
	}
}

func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// chain follows the backing chain below st (opened from given) by reading
// image headers through the step's own handle.
func (b *builder) chain(r *domain.Resource, st *Step, given string, depth int, visiting map[owner.ID]bool) error {
	if depth >= b.env.MaxDepth {
		return b.fail(r, st.Path, fmt.Errorf("backing chain deeper than %d images (max_backing_depth)", b.env.MaxDepth))
	}
	format := r.Format
	if format == "" || format == "raw" {
		return nil
	}
	info, err := readImage(st.Handle, format)
	st.HeaderFormat, st.HeaderPrint = format, headerPrint(info, err)
	switch {
	case errors.Is(err, image.ErrUnsupported):
		return nil // a format without backing files (luks, vpc, ...)
	case errors.Is(err, image.ErrWrongFormat):
		// QEMU opens the image as the declared format and will fail on
		// it; a header we were not told to trust is not followed.
		b.plan.Notes = append(b.plan.Notes, fmt.Sprintf("%s is declared %s but its header is not; not followed", st.Path, format))
		return nil
	case err != nil:
		return b.fail(r, st.Path, err)
	}
	if n := len(info.Extents); n > MaxFilesPerImage {
		return b.fail(r, st.Path, fmt.Errorf("domain %s: the %s header of %s lists %d extent files, more than the %d the hook follows for one image; a forged descriptor can do this: check the image, or convert it to fewer extents (`qemu-img convert -O vmdk -o subformat=monolithicSparse`): %w",
			b.plan.Domain, format, st.Path, n, MaxFilesPerImage, owner.ErrRefused))
	}
	if info.DataFile != "" {
		if err := b.checkHeaderName(st.Path, joinHeaderName(given, info.DataFile)); err != nil {
			return b.fail(r, st.Path, err)
		}
		dr := &domain.Resource{Kind: domain.KindDataFile, From: baseFrom(r.From) + " → data-file",
			Expect: domain.TypeRegular, ReadOnly: r.ReadOnly, Label: r.Label, Skip: r.Skip}
		if err := b.file(dr, joinHeaderName(given, info.DataFile), owner.Want{Types: dr.Expect, Kind: dr.Kind}, depth, visiting, st); err != nil {
			return err
		}
	}
	for i, ext := range info.Extents {
		p := joinHeaderName(given, ext)
		if err := b.checkHeaderName(st.Path, p); err != nil {
			return b.fail(r, st.Path, err)
		}
		er := &domain.Resource{Kind: domain.KindExtent, From: fmt.Sprintf("%s → extent[%d]", baseFrom(r.From), i+1),
			Expect: domain.TypeRegular, ReadOnly: r.ReadOnly, Label: r.Label, Skip: r.Skip}
		if err := b.file(er, p, owner.Want{Types: er.Expect, Kind: er.Kind}, depth, visiting, st); err != nil {
			return err
		}
	}
	name := strings.TrimPrefix(info.BackingName, "file:")
	if name == "" {
		return nil
	}
	if isProtocol(name) {
		b.plan.Notes = append(b.plan.Notes, fmt.Sprintf("backing %q of %s is not a local file; skipped", name, st.Path))
		return nil
	}
	if info.BackingFormat == "" {
		return b.fail(r, st.Path, fmt.Errorf("the format of backing file %q is not recorded in the image, and libvirt does not probe it: run `qemu-img rebase -u -F <format> -b %s %s`", name, name, st.Path))
	}
	p := joinHeaderName(given, name)
	if err := b.checkHeaderName(st.Path, p); err != nil {
		return b.fail(r, st.Path, err)
	}
	br := &domain.Resource{
		Kind: domain.KindBacking, From: fmt.Sprintf("%s → backing[%d]", baseFrom(r.From), depth+1),
		Expect: domain.TypeRegular, ReadOnly: true, Format: info.BackingFormat, ProbeBacking: true,
		Label: r.Label, Skip: r.Skip,
	}
	return b.file(br, p, owner.Want{Types: br.Expect, Kind: br.Kind}, depth+1, visiting, st)
}

// joinHeaderName resolves a name from the header of the image opened as
// given the way QEMU (path_combine) and libvirt do: a relative name is
// appended to the directory part of given as a string, without cleaning.
// The kernel, and owner.Open after it, then resolve ".." after whatever a
// symlink before it points to; filepath.Join would clean "lnk/.." away
// lexically and name a different file than the one QEMU opens.
func joinHeaderName(given, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return given[:strings.LastIndexByte(given, '/')+1] + name
}

func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

func isProtocol(name string) bool {
	i := strings.IndexByte(name, ':')
	if i <= 0 {
		return false
	}
	// A colon before any slash is a protocol prefix (nbd:, json:, rbd:, ...).
	return !strings.Contains(name[:i], "/")
}

func readImage(h *owner.Handle, format string) (image.Info, error) {
	f, err := h.OpenReader()
	if err != nil {
		return image.Info{}, err
	}
	defer f.Close()
	info, err := image.ReadFormat(f, f.Size, format)
	if err != nil {
		return image.Info{}, fmt.Errorf("read %s header of %s: %w", format, h.Path, err)
	}
	return info, nil
}

// HeaderPrint reads the header of the file h holds as format again and
// says what it names, in the form Step.HeaderPrint keeps: prepare compares
// the two once nobody but root and QEMU can write the file any more.
func HeaderPrint(h *owner.Handle, format string) string {
	info, err := readImage(h, format)
	return headerPrint(info, err)
}

// headerPrint is what a header read came to: the files it names, or why
// none are followed.
func headerPrint(info image.Info, err error) string {
	switch {
	case errors.Is(err, image.ErrUnsupported):
		return "unsupported"
	case errors.Is(err, image.ErrWrongFormat):
		return "wrong-format"
	case err != nil:
		return "error"
	}
	// Every field quoted, so no two headers print alike; strconv, not
	// fmt's %#v, which cost as much as reading the header.
	b := make([]byte, 0, 64+len(info.BackingName)+len(info.DataFile))
	for _, f := range []string{info.Format, info.BackingName, info.BackingFormat, info.DataFile} {
		b = strconv.AppendQuote(b, f)
		b = append(b, ' ')
	}
	b = strconv.AppendInt(b, int64(len(info.Extents)), 10)
	for _, e := range info.Extents {
		b = append(b, ' ')
		b = strconv.AppendQuote(b, e)
	}
	return string(b)
}

// baseFrom is the XML element a header-found file hangs off: files named
// in image headers are shown as "<element> → backing[N]", N counting from
// the image the XML names.
func baseFrom(from string) string {
	if i := strings.Index(from, " → "); i >= 0 {
		return from[:i]
	}
	return from
}
