#!/bin/sh
# pkgversion.sh prints the version the .deb and .rpm carry, derived from
# `git describe --tags --always --dirty` so that it is valid for both dpkg
# and rpm (no '-', starts with a digit) and sorts the way releases do:
#
#   v1.2.3                      -> 1.2.3
#   v1.2.3-rc1                  -> 1.2.3~rc1               (~ sorts before 1.2.3)
#   v1.2.3-4-gabc1234           -> 1.2.3+git4.abc1234      (4 commits after the tag)
#   abc1234 (no tag at all)     -> 0.0.0~git20261127122147.abc1234
#                                  (committer time of HEAD, UTC, so later
#                                  commits sort higher; all below any 0.0.0 tag)
#   ...-dirty                   -> <the above>.dirty       (uncommitted changes)
#   no commit yet / no git      -> 0.0.0~dev
#
# Run it from anywhere inside the work tree.
set -eu

desc=$(git describe --tags --always --dirty 2>/dev/null) || desc=
if [ -z "$desc" ]; then
	echo "0.0.0~dev"
	exit 0
fi

dirty=
case "$desc" in
*-dirty)
	dirty=.dirty
	desc=${desc%-dirty}
	;;
esac

# Only what both formats accept: letters, digits, '.', '+', '~'.
clean() {
	printf '%s' "$1" | sed -e 's/^[vV]//' -e 's/-/~/g' -e 's/[^A-Za-z0-9.+~]/./g'
}

if printf '%s' "$desc" | grep -Eq '^.+-[0-9]+-g[0-9a-f]+$'; then
	tag=$(printf '%s' "$desc" | sed -E 's/^(.+)-[0-9]+-g[0-9a-f]+$/\1/')
	n=$(printf '%s' "$desc" | sed -E 's/^.+-([0-9]+)-g[0-9a-f]+$/\1/')
	sha=$(printf '%s' "$desc" | sed -E 's/^.+-[0-9]+-g([0-9a-f]+)$/\1/')
	ver="$(clean "$tag")+git$n.$sha"
elif printf '%s' "$desc" | grep -Eq '^[0-9a-f]{4,40}$' && ! git rev-parse -q --verify "refs/tags/$desc" >/dev/null; then
	# --always fell back to the abbreviated commit: there is no tag.
	when=$(TZ=UTC0 git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd HEAD)
	ver="0.0.0~git$when.$desc"
else
	ver=$(clean "$desc")
fi

# dpkg requires a leading digit; a tag such as "release-1" gets one.
case "$ver" in
[0-9]*) ;;
*) ver="0.0.0~$ver" ;;
esac

echo "$ver$dirty"
