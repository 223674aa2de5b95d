#!/usr/bin/env bash
# Builds, once per machine, a Debian root filesystem holding another SLURM release, for
# `slurmlink dev-cluster up --slurm VERSION` (its daemons and client commands run from that root).
# Usage: build-slurm-root.sh VERSION   (24.11 = Debian 13 "trixie"). Prints the root's path.
# The root is cached under /var/cache/slurmlink/, keyed by suite and package list: a changed list builds
# a new root; an unchanged one is reused. /var/cache/slurmlink/slurm-VERSION links to the current one
# (slurmlink.devcluster.rootfs finds it there). Needs root and mmdebstrap (installed when missing).
set -euo pipefail

die() { printf 'build-slurm-root.sh: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
version=${1:-}
case "$version" in
  24.11) suite=trixie ;;
  *) die "no Debian suite known for SLURM '$version' (known: 24.11)" ;;
esac

# The daemons and client commands, and what the job scripts use (slurmd runs them inside the root):
# awk/coreutils come with minbase; bwrap, pkill, hostname and python3 (the tests' pods use it) do not.
packages=(slurmctld slurmd slurmdbd slurm-client slurmrestd slurm-wlm-jwt-plugin munge bubblewrap procps hostname python3)
mirror=${SLURMLINK_DEBIAN_MIRROR:-http://deb.debian.org/debian}

cache=/var/cache/slurmlink
key=$(printf '%s\n' "$suite" "${packages[@]}" | sha256sum | cut -c1-12)
root="$cache/slurm-$version-$suite-$key"
link="$cache/slurm-$version"
if [ -e "$root/.slurmlink-complete" ]; then
  ln -sfn "$(basename "$root")" "$link"
  echo "$root"
  exit 0
fi

if ! command -v mmdebstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq mmdebstrap >/dev/null || die "apt-get install mmdebstrap failed"
fi
mkdir -p "$cache"
rm -rf "$root.partial"
include=$(IFS=,; echo "${packages[*]}")
# Package scripts must not start daemons in the root (policy-rc.d says no to every service).
mmdebstrap --quiet --variant=minbase --include="$include" \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  --setup-hook='mkdir -p "$1/usr/sbin" && printf "#!/bin/sh\nexit 101\n" >"$1/usr/sbin/policy-rc.d" && chmod 755 "$1/usr/sbin/policy-rc.d"' \
  "$suite" "$root.partial" "$mirror" >&2 || die "mmdebstrap of $suite into $root.partial failed"
touch "$root.partial/.slurmlink-complete"
mv "$root.partial" "$root"
ln -sfn "$(basename "$root")" "$link"
echo "$root"
