"""The command line that starts one container, per container runtime: host, bwrap, apptainer."""

from __future__ import annotations

from collections.abc import Mapping

from slurmlink.core.errors import PodRejected
from slurmlink.translate.site import SiteConfig
from slurmlink.translate.volumes import Mount

RUNTIMES = ("host", "bwrap", "apptainer", "singularity")
HOST_MOUNTS_DIR = "mounts"  # the host runtime's stand-in for mounts: <workdir>/mounts/<mountPath>

# `exec "$0" "$@"` runs an argv whose first word contains "=" (which `env` would take for a variable).
# The string is constant; the argv reaches sh as separate, uninterpreted arguments. Only used then,
# because sh drops environment variables whose names are not shell identifiers.
_EXEC_ARGV = ["/bin/sh", "-c", 'exec "$0" "$@"']


def _absolute(source: str, workdir: str) -> str:
    return source if source.startswith("/") else f"{workdir}/{source}"


def container_command(
    *, runtime: str, site: SiteConfig, workdir: str, hostname: str, image: str, command: list[str],
    args: list[str], env: Mapping[str, str], working_dir: str | None, mounts: list[Mount],
) -> list[str]:
    """The argv for `sl_run`: each item will be shell-quoted by the script builder."""
    if image.startswith("-"):
        raise PodRejected(f"image {image!r} must not start with '-'", "InvalidImageName")
    if runtime in ("apptainer", "singularity"):
        return _apptainer(site, workdir, image, command, args, env, working_dir, mounts)
    if not command:
        raise PodRejected(f"the {runtime} runtime cannot run an image's default entrypoint: set command",
                          "EntrypointUnsupported")
    base_env = {"PATH": site.path, "HOSTNAME": hostname}
    if runtime == "host":
        full_env = {**base_env, "HOME": workdir, "SLURMLINK_MOUNTS": f"{workdir}/{HOST_MOUNTS_DIR}", **env}
        return ["sl_env", working_dir or workdir, *(f"{k}={v}" for k, v in full_env.items()),
                *(_EXEC_ARGV if "=" in command[0] else []), *command, *args]
    if runtime == "bwrap":
        rootfs = site.bwrap.images.get(image, site.bwrap.default_rootfs)
        if rootfs is None:
            raise PodRejected(f"image {image!r} is not available at this site", "ImageNotAvailable")
        full_env = {**base_env, "HOME": "/tmp", **env}
        argv = ["sl_bwrap", site.bwrap.executable, rootfs, working_dir or "/", hostname,
                str(len(full_env)), *(f"{k}={v}" for k, v in full_env.items()), str(len(mounts))]
        for mount in mounts:
            argv += [_absolute(mount.source, workdir), mount.destination, "ro" if mount.read_only else "rw"]
        return [*argv, "--", *command, *args]
    raise PodRejected(f"container runtime {runtime!r} is not one of {', '.join(RUNTIMES)}", "RuntimeUnsupported")


def image_uri(image: str, prefix: str) -> str:
    if image.startswith("/") or "://" in image:
        return image
    return prefix + image


def _apptainer(site: SiteConfig, workdir: str, image: str, command: list[str], args: list[str],
               env: Mapping[str, str], working_dir: str | None, mounts: list[Mount]) -> list[str]:
    # Environment travels as APPTAINERENV_* variables of the runtime process: no env file to parse.
    argv = ["env", "-i", f"PATH={site.path}", *(f"APPTAINERENV_{k}={v}" for k, v in env.items()),
            site.apptainer.executable, "exec" if command else "run", *site.apptainer.options]
    for mount in mounts:
        source = _absolute(mount.source, workdir)
        for path in (source, mount.destination):
            if ":" in path or "," in path:
                raise PodRejected(f"path {path!r} cannot be bound by apptainer (contains ':' or ',')")
        argv += ["--bind", f"{source}:{mount.destination}:{'ro' if mount.read_only else 'rw'}"]
    if working_dir:
        argv += ["--pwd", working_dir]
    return [*argv, image_uri(image, site.apptainer.image_prefix), *command, *args]
