package image

import "fmt"

// QED header layout (little endian), from QEMU's block/qed.h.
const (
	qedHeaderSize        = 64 // sizeof(QEDHeader); qed_probe wants this much
	qedOffClusterSize    = 4  // u32
	qedOffHeaderSize     = 12 // u32, in clusters
	qedOffFeatures       = 16 // u64
	qedOffBackingOffset  = 56 // u32
	qedOffBackingSize    = 60 // u32
	qedMinClusterSize    = 4 << 10
	qedMaxClusterSize    = 64 << 20
	qedFeatureBacking    = 0x01
	qedFeatureNeedCheck  = 0x02
	qedFeatureNoProbe    = 0x04 // QED_F_BACKING_FORMAT_NO_PROBE: backing is raw
	qedKnownFeatureFlags = qedFeatureBacking | qedFeatureNeedCheck | qedFeatureNoProbe
)

// parseQED reads a QED header, following bdrv_qed_do_open. QED records no
// backing format except "raw" through the no-probe flag; libvirt then
// probes safely (VIR_STORAGE_FILE_AUTO_SAFE), here BackingFormat stays "".
func (s *source) parseQED() (Info, error) {
	info := Info{Format: FormatQED}
	h, err := s.readAt(0, qedHeaderSize, "qed header")
	if err != nil {
		return info, err
	}
	features := le64(h[qedOffFeatures:])
	if features&^qedKnownFeatureFlags != 0 {
		return info, fmt.Errorf("%w: qed feature bits 0x%x", ErrUnsupported, features&^qedKnownFeatureFlags)
	}
	clusterSize := uint64(le32(h[qedOffClusterSize:]))
	if clusterSize < qedMinClusterSize || clusterSize > qedMaxClusterSize || clusterSize&(clusterSize-1) != 0 {
		return info, fmt.Errorf("%w: qed cluster size %d", ErrMalformed, clusterSize)
	}
	headerClusters := uint64(le32(h[qedOffHeaderSize:]))
	if headerClusters > 0xffffffff/clusterSize {
		return info, fmt.Errorf("%w: qed header size %d clusters overflows", ErrMalformed, headerClusters)
	}
	if features&qedFeatureBacking == 0 {
		return info, nil
	}
	off := uint64(le32(h[qedOffBackingOffset:]))
	n := uint64(le32(h[qedOffBackingSize:]))
	if off+n > clusterSize*headerClusters {
		return info, fmt.Errorf("%w: qed backing file name (%d bytes at %d) outside the %d-byte header",
			ErrMalformed, n, off, clusterSize*headerClusters)
	}
	if n > maxName {
		return info, fmt.Errorf("%w: qed backing file name length %d exceeds %d", ErrMalformed, n, maxName)
	}
	name, err := s.readAt(int64(off), int64(n), "qed backing file name")
	if err != nil {
		return info, err
	}
	info.BackingName = cstr(name)
	if info.BackingName != "" && features&qedFeatureNoProbe != 0 {
		info.BackingFormat = FormatRaw
	}
	return info, nil
}
