#!/usr/bin/env bash
# Makes a base image for deploy/container/Containerfile without a registry: a Debian 12 root with python3 and
# python3-venv made by mmdebstrap (from the site's Debian mirror), committed FROM scratch as a local image.
# Usage, as root: build-local-base.sh [IMAGE]   (default localhost/slurmlink-base:bookworm); prints IMAGE.
# The root is cached as a tarball under /var/cache/slurmlink/, keyed by suite and packages; buildah's
# options come from BUILDAH_OPTS (the tests use "--storage-driver vfs").
set -euo pipefail

die() { printf 'build-local-base.sh: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
image=${1:-localhost/slurmlink-base:bookworm}
suite=bookworm
packages=(python3 python3-venv ca-certificates)
mirror=${SLURMLINK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
read -r -a buildah_opts <<<"${BUILDAH_OPTS:-}"

cache=/var/cache/slurmlink
key=$(printf '%s\n' "$suite" "${packages[@]}" | sha256sum | cut -c1-12)
tarball="$cache/image-base-$suite-$key.tar"
if [ ! -s "$tarball" ]; then
  for tool in mmdebstrap buildah; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install $tool)"
  done
  mkdir -p "$cache"
  include=$(IFS=,; echo "${packages[*]}")
  mmdebstrap --quiet --variant=minbase --format=tar --include="$include" \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    "$suite" "$tarball.partial" "$mirror" >&2 || die "mmdebstrap of $suite failed"
  mv "$tarball.partial" "$tarball"
fi
if ! buildah "${buildah_opts[@]}" inspect --type image "$image" >/dev/null 2>&1; then
  container=$(buildah "${buildah_opts[@]}" from scratch)
  buildah "${buildah_opts[@]}" add "$container" "$tarball" / >&2
  buildah "${buildah_opts[@]}" config --cmd /bin/bash "$container"
  buildah "${buildah_opts[@]}" commit --quiet --rm "$container" "$image" >/dev/null
fi
echo "$image"
