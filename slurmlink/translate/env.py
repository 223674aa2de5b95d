"""A container's environment and command line, resolved the way the kubelet resolves them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from slurmlink.core.errors import PodRejected
from slurmlink.core.kube import as_dict, as_list, as_str, object_data

_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, unknown ones kept, `$$` escapes `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


class Objects:
    """The ConfigMaps and Secrets sent with a pod, looked up by name."""

    def __init__(self, configmaps: list[dict[str, Any]], secrets: list[dict[str, Any]]) -> None:
        self.configmaps = {as_dict(c.get("metadata"), "configmap.metadata").get("name"): c for c in configmaps}
        self.secrets = {as_dict(s.get("metadata"), "secret.metadata").get("name"): {**s, "kind": "Secret"}
                        for s in secrets}

    def data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        found = (self.configmaps if kind == "configmap" else self.secrets).get(name)
        if found is None:
            if optional:
                return None
            raise PodRejected(f'{kind} "{name}" not found', "CreateContainerConfigError")
        return object_data(found, f'{kind} "{name}"')


def _text(value: bytes, what: str) -> str:
    try:
        text = value.decode()
    except UnicodeDecodeError as exc:
        raise PodRejected(f"{what} is not UTF-8 text", "CreateContainerConfigError") from exc
    if "\x00" in text:
        raise PodRejected(f"{what} contains a NUL byte", "CreateContainerConfigError")
    return text


def _field(pod: Mapping[str, Any], path: str) -> str:
    meta = as_dict(pod.get("metadata"), "metadata")
    spec = as_dict(pod.get("spec"), "spec")
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if match:
        return str(as_dict(meta.get(match.group(1)), f"metadata.{match.group(1)}").get(match.group(2), ""))
    raise PodRejected(f"fieldRef {path!r} is not supported", "CreateContainerConfigError")


def _resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    from slurmlink.core.quantity import parse_quantity

    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    res = as_dict(container.get("resources"), "resources")
    section = as_dict(res.get(kind), f"resources.{kind}")
    if name not in section:
        return "0"
    value = parse_quantity(section[name], resource)
    divisor = parse_quantity(ref.get("divisor") or "1", "divisor")
    if divisor == 0:
        raise PodRejected(f"resourceFieldRef {resource}: divisor must not be 0", "CreateContainerConfigError")
    return str(int(-(-value // divisor)))  # ceil, as the kubelet rounds up


def container_env(
    container: Mapping[str, Any], pod: Mapping[str, Any], objects: Objects
) -> dict[str, str]:
    """envFrom first, then env (later entries win), with `$(VAR)` expansion against what came before."""
    env: dict[str, str] = {}
    where = f"container {container.get('name')}"
    for source in as_list(container.get("envFrom"), f"{where} envFrom"):
        source = as_dict(source, f"{where} envFrom[]")
        prefix = as_str(source.get("prefix") or "", f"{where} envFrom.prefix")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = as_dict(source.get(key), f"{where} envFrom.{key}")
            if ref:
                data = objects.data(kind, str(ref.get("name", "")), bool(ref.get("optional")))
                for name, value in (data or {}).items():
                    env[prefix + name] = _text(value, f"{kind} {ref.get('name')} key {name}")
    for entry in as_list(container.get("env"), f"{where} env"):
        entry = as_dict(entry, f"{where} env[]")
        name = as_str(entry.get("name", ""), f"{where} env[].name")
        env[name] = _env_value(entry, container, pod, objects, env)
    for name in env:
        if not name or "=" in name:
            raise PodRejected(f"{where}: environment variable name {name!r} is invalid")
    return env


def _env_value(
    entry: Mapping[str, Any], container: Mapping[str, Any], pod: Mapping[str, Any],
    objects: Objects, env: Mapping[str, str],
) -> str:
    name = entry.get("name")
    if "valueFrom" not in entry or entry.get("valueFrom") is None:
        return expand(as_str(entry.get("value") or "", f"env {name}"), env)
    source = as_dict(entry["valueFrom"], f"env {name}.valueFrom")
    for kind, key in (("configmap", "configMapKeyRef"), ("secret", "secretKeyRef")):
        if key in source:
            ref = as_dict(source[key], f"env {name}.{key}")
            data = objects.data(kind, str(ref.get("name", "")), bool(ref.get("optional")))
            if data is None:
                return ""
            wanted = str(ref.get("key", ""))
            if wanted not in data:
                if ref.get("optional"):
                    return ""
                raise PodRejected(f'key "{wanted}" not found in {kind} "{ref.get("name")}"',
                                  "CreateContainerConfigError")
            return _text(data[wanted], f"env {name}")
    if "fieldRef" in source:
        return _field(pod, str(as_dict(source["fieldRef"], "fieldRef").get("fieldPath", "")))
    if "resourceFieldRef" in source:
        return _resource_field(container, as_dict(source["resourceFieldRef"], "resourceFieldRef"))
    raise PodRejected(f"env {name}: unsupported valueFrom", "CreateContainerConfigError")


def container_argv(container: Mapping[str, Any], env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(command, args) with `$(VAR)` expanded; an empty command means "the image's entrypoint"."""
    where = f"container {container.get('name')}"
    command = [expand(as_str(a, f"{where} command[]"), env) for a in as_list(container.get("command"), where)]
    args = [expand(as_str(a, f"{where} args[]"), env) for a in as_list(container.get("args"), where)]
    return command, args
