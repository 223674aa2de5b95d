"""Which ConfigMaps and Secrets a pod needs (pure): volumes, env valueFrom, envFrom, the token Secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slurmlink.wire.names import TOKEN_SECRET_ANNOTATION

Obj = dict[str, Any]


@dataclass
class References:
    required: set[tuple[str, str]] = field(default_factory=set)  # (ConfigMap|Secret, name)
    optional: set[tuple[str, str]] = field(default_factory=set)

    def add(self, kind: str, name: Any, optional: Any) -> None:
        if isinstance(name, str) and name:
            (self.optional if optional else self.required).add((kind, name))

    def all(self) -> list[tuple[str, str]]:
        return sorted(self.required | (self.optional - self.required))

    def is_required(self, kind: str, name: str) -> bool:
        return (kind, name) in self.required


def _containers(pod: Obj) -> list[Obj]:
    spec = pod.get("spec") or {}
    return [c for c in (spec.get("initContainers") or []) + (spec.get("containers") or []) if isinstance(c, dict)]


def references(pod: Obj) -> References:
    """Objects sent with the pod. Projected volumes are resolved apart (see projected.py)."""
    refs = References()
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        if isinstance(volume.get("configMap"), dict):
            refs.add("ConfigMap", volume["configMap"].get("name"), volume["configMap"].get("optional"))
        if isinstance(volume.get("secret"), dict):
            refs.add("Secret", volume["secret"].get("secretName"), volume["secret"].get("optional"))
    for container in _containers(pod):
        for env in container.get("env") or []:
            source = (env or {}).get("valueFrom") or {}
            for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if isinstance(source.get(key), dict):
                    refs.add(kind, source[key].get("name"), source[key].get("optional"))
        for env_from in container.get("envFrom") or []:
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if isinstance((env_from or {}).get(key), dict):
                    refs.add(kind, env_from[key].get("name"), env_from[key].get("optional"))
    token_secret = ((pod.get("metadata") or {}).get("annotations") or {}).get(TOKEN_SECRET_ANNOTATION)
    refs.add("Secret", token_secret, False)
    return refs
