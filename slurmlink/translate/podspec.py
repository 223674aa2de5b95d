"""Reading a pod (a plain dict, as Kubernetes serialises it) safely: names, containers, resources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slurmlink.core import quantity
from slurmlink.core.errors import PodRejected
from slurmlink.core.kube import DNS_LABEL, DNS_SUBDOMAIN, UID, as_dict, as_list, as_str
from slurmlink.translate.site import SiteConfig


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str


def pod_ref(pod: Mapping[str, Any]) -> PodRef:
    meta = as_dict(pod.get("metadata"), "metadata")
    namespace = as_str(meta.get("namespace", ""), "metadata.namespace")
    name = as_str(meta.get("name", ""), "metadata.name")
    uid = as_str(meta.get("uid", ""), "metadata.uid")
    if not DNS_LABEL.match(namespace):
        raise PodRejected(f"metadata.namespace {namespace!r} is not a DNS label")
    if not DNS_SUBDOMAIN.match(name):
        raise PodRejected(f"metadata.name {name!r} is not a DNS subdomain")
    if not UID.match(uid):
        raise PodRejected(f"metadata.uid {uid!r} is not a UID")
    return PodRef(namespace, name, uid)


def init_containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = as_dict(pod.get("spec"), "spec")
    return [as_dict(c, "spec.initContainers[]") for c in as_list(spec.get("initContainers"), "spec.initContainers")]


def app_containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = as_dict(pod.get("spec"), "spec")
    return [as_dict(c, "spec.containers[]") for c in as_list(spec.get("containers"), "spec.containers")]


def container_names(pod: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    return [c.get("name", "") for c in init_containers(pod)], [c.get("name", "") for c in app_containers(pod)]


def validate_containers(pod: Mapping[str, Any]) -> None:
    inits, apps = init_containers(pod), app_containers(pod)
    if not apps:
        raise PodRejected("spec.containers is empty")
    seen: set[str] = set()
    for container in inits + apps:
        name = container.get("name")
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            raise PodRejected(f"container name {name!r} is not a DNS label")
        if name in seen:
            raise PodRejected(f"container name {name!r} is used twice")
        seen.add(name)


def pod_annotations(pod: Mapping[str, Any]) -> dict[str, str]:
    meta = as_dict(pod.get("metadata"), "metadata")
    return {str(k): str(v) for k, v in as_dict(meta.get("annotations"), "metadata.annotations").items()}


@dataclass(frozen=True)
class Resources:
    cpus: int | None
    memory_mb: int | None
    generic: dict[str, int]  # extended resources, e.g. {"nvidia.com/gpu": 2}


def _container_resources(container: Mapping[str, Any], site: SiteConfig) -> Resources:
    res = as_dict(container.get("resources"), "resources")
    # A limit is what the container may use, so it is what SLURM must allocate; else the request.
    merged = {**as_dict(res.get("requests"), "resources.requests"), **as_dict(res.get("limits"), "resources.limits")}
    where = f"container {container.get('name')}"
    return Resources(
        cpus=quantity.cpus(merged["cpu"], f"{where} cpu") if "cpu" in merged else None,
        memory_mb=quantity.mebibytes(merged["memory"], f"{where} memory") if "memory" in merged else None,
        generic={k: quantity.count(v, f"{where} {k}") for k, v in merged.items() if k in site.gres},
    )


def _combine(values: list[int | None], combine: Any) -> int | None:
    known = [v for v in values if v is not None]
    return combine(known) if known else None


def effective_resources(pod: Mapping[str, Any], site: SiteConfig) -> Resources:
    """Kubernetes' effective pod resources: app containers run together (sum), init ones one at a time (max)."""
    apps = [_container_resources(c, site) for c in app_containers(pod)]
    inits = [_container_resources(c, site) for c in init_containers(pod)]

    def effective(attr: str) -> int | None:
        together = _combine([getattr(r, attr) for r in apps], sum)
        alone = _combine([getattr(r, attr) for r in inits], max)
        return _combine([together, alone], max)

    generic: dict[str, int] = {}
    for name in {k for r in apps + inits for k in r.generic}:
        together = sum(r.generic.get(name, 0) for r in apps)
        generic[name] = max([together] + [r.generic.get(name, 0) for r in inits])
    return Resources(cpus=effective("cpus"), memory_mb=effective("memory_mb"), generic=generic)
