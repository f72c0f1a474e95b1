package owner

// Protects reports whether the inode h holds is under a protected
// directory, by its path or by its place in its filesystem (a bind mount
// of a protected directory elsewhere is still protected). When the host's
// mount table cannot be read, only the path decides.
func (p Policy) Protects(h *Handle) bool {
	if _, ok := p.protectedBy(h.Path); ok {
		return true
	}
	st, err := p.state()
	if err != nil {
		return false
	}
	_, ok := st.protectedInode(h)
	return ok
}
