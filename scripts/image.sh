#!/usr/bin/env bash
# The container image, built on this machine with Debian's tools only (`make image`):
#
#   scripts/image.sh base     a Debian bookworm base made with mmdebstrap (minbase, documents
#                             and locales left out as in the slim images), committed with buildah
#                             under the Dockerfile's FROM name; kept once made
#   scripts/image.sh build    the Dockerfile, built with `buildah build --isolation chroot
#                             --pull=never` and tagged IMAGE (default compute_ctl:<version>)
#   scripts/image.sh size     the image's size
#
# PIP_CA_BUNDLE: a CA bundle for pip inside the build (a TLS proxy in front of the package
# index), passed as the build secret `pip-ca`, never written into the image. When unset, the one
# pip is set up with here is used: $PIP_CERT, else pip's `global.cert` setting, else none.
# MIRROR: Debian's mirror for the base (default http://deb.debian.org/debian).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml")"
IMAGE="${IMAGE:-compute_ctl:$VERSION}"
BASE="$(sed -n 's/^FROM \([^ ]*\).*$/\1/p' "$ROOT/Dockerfile" | head -n 1)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
WORK="$ROOT/build/image"

say() { echo "image: $*" >&2; }

# The FROM name as buildah stores it: a name without a registry is Docker Hub's library.
qualified() {
	case "$1" in
	*/*) echo "$1" ;;
	*) echo "docker.io/library/$1" ;;
	esac
}

step_base() {
	local name
	name="$(qualified "$BASE")"
	if buildah inspect --type image "$name" >/dev/null 2>&1; then
		say "base: $name found"
		return
	fi
	local suite="${BASE#*:}"
	suite="${suite%-slim}"
	mkdir -p "$WORK"
	say "base: mmdebstrap $suite from $MIRROR"
	mmdebstrap --variant=minbase --mode=root --format=tar --quiet \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		"$suite" "$WORK/base.tar" \
		"deb $MIRROR $suite main" \
		"deb $MIRROR $suite-updates main" \
		"deb ${MIRROR%/debian}/debian-security $suite-security main"
	local container
	container="$(buildah from scratch)"
	buildah add --quiet "$container" "$WORK/base.tar" / >/dev/null
	buildah config --cmd /bin/bash "$container"
	buildah commit --quiet --rm "$container" "$name" >/dev/null
	rm -f "$WORK/base.tar"
	say "base: $name committed"
}

ca_bundle() {
	if [[ -n "${PIP_CA_BUNDLE:-}" ]]; then
		echo "$PIP_CA_BUNDLE"
	elif [[ -n "${PIP_CERT:-}" ]]; then
		echo "$PIP_CERT"
	elif command -v python3 >/dev/null 2>&1; then
		python3 -m pip config get global.cert 2>/dev/null || true
	fi
}

step_build() {
	local args=(--isolation chroot --pull=never --format docker --layers --tag "$IMAGE"
		--build-arg "VERSION=$VERSION" --build-arg "BUILD_TAG=${BUILD_TAG:-latest}")
	local revision bundle
	revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
	args+=(--build-arg "REVISION=$revision")
	bundle="$(ca_bundle)"
	if [[ -n "$bundle" ]]; then
		[[ -r "$bundle" ]] || {
			say "build: the CA bundle $bundle cannot be read"
			exit 1
		}
		say "build: pip trusts $bundle (build secret pip-ca)"
		args+=(--secret "id=pip-ca,src=$bundle")
	fi
	say "build: $IMAGE"
	buildah build "${args[@]}" "$ROOT"
	step_size
}

step_size() {
	buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"
}

step="${1:-}"
case "$step" in
base) step_base ;;
build) step_build ;;
size) step_size ;;
*)
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
	;;
esac
