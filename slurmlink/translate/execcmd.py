"""`kubectl exec` into a running pod: the argv that starts the command inside the container, on the job's node.

The command runs in a new job step (`srun --overlap` as the pod's own account, see api/exec.py) through the
same runtime function the job script used for the container (`sl_env` for host, `sl_bwrap` for bwrap), so
it sees the same root, mounts, working directory, hostname and environment. For bwrap that is a second
sandbox with the same binds, not the container's own namespaces: files and volumes are shared, /tmp (a tmpfs
per sandbox) and IPC are not. Entering the container process's namespaces (nsenter) would need its PID on the
node, which SLURM does not tell; the bwrap sandbox keeps no other state.

The argv reaches bash as one constant prelude plus one line in which every word is shell-quoted: nothing
the caller sends is interpreted by a shell. Pure: no I/O beyond reading the prelude.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from shlex import quote
from typing import Any

from slurmlink.core.errors import PodRejected
from slurmlink.translate.env import Objects, container_env
from slurmlink.translate.podspec import app_containers, init_containers, pod_annotations, pod_ref
from slurmlink.translate.runtime import container_command
from slurmlink.translate.script import prelude
from slurmlink.translate.site import SiteConfig
from slurmlink.translate.volumes import absolute_path, plan_volumes
from slurmlink.wire.names import RUNTIME_ANNOTATION

EXEC_RUNTIMES = ("host", "bwrap")
_FROM_OBJECTS = ("configMapKeyRef", "secretKeyRef")


class _NoObjects(Objects):
    """The API keeps no ConfigMaps or Secrets after /create: exec gets their paths, never their values."""

    def __init__(self) -> None:
        super().__init__([], [])

    def data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        return None


def exec_env(container: Mapping[str, Any], pod: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment without the values that came from ConfigMaps or Secrets."""
    env = container_env(container, pod, _NoObjects())
    for entry in container.get("env") or []:
        source = (entry or {}).get("valueFrom") or {}
        if any(key in source for key in _FROM_OBJECTS):
            env.pop(str(entry.get("name")), None)
    return env


def find_container(pod: Mapping[str, Any], name: str) -> dict[str, Any]:
    for container in app_containers(pod) + init_containers(pod):
        if container.get("name") == name:
            return container
    raise PodRejected(f"container {name} is not valid for pod {pod_ref(pod).name}", "ContainerNotFound")


def exec_argv(pod: Mapping[str, Any], container_name: str, command: Sequence[str], *, site: SiteConfig,
              workdir: str) -> list[str]:
    """The argv for the job step; raises PodRejected when this pod's runtime cannot take an exec."""
    if not command:
        raise PodRejected("you must specify at least one command for the container", "BadRequest")
    runtime = pod_annotations(pod).get(RUNTIME_ANNOTATION, site.runtime)
    if runtime not in EXEC_RUNTIMES:
        raise PodRejected(f"exec is not supported for the {runtime} runtime at this site (only "
                          f"{', '.join(EXEC_RUNTIMES)})", "ExecUnsupported")
    container = find_container(pod, container_name)
    plan = plan_volumes(pod, _NoObjects(), {}, site)
    working_dir = container.get("workingDir")
    argv = container_command(
        runtime=runtime, site=site, workdir=workdir, hostname=pod_ref(pod).name[:63],
        image=str(container.get("image") or ""), command=list(command), args=[],
        env=exec_env(container, pod),
        working_dir=absolute_path(working_dir, "workingDir") if working_dir else None,
        mounts=plan.mounts[container_name])
    script = prelude() + "\n" + " ".join(quote(word) for word in argv) + "\n"
    return ["/bin/bash", "-c", script, "slurmlink-exec"]
