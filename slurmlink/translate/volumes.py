"""A pod's volumes as files the job writes and mounts each container gets."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slurmlink.core.errors import PodRejected
from slurmlink.core.kube import DNS_LABEL, as_dict, as_list, as_str
from slurmlink.translate.env import Objects, _field, _resource_field
from slurmlink.translate.layout import VOLUMES_DIR
from slurmlink.translate.podspec import app_containers, init_containers
from slurmlink.translate.site import SiteConfig


@dataclass(frozen=True)
class File:
    path: str  # relative to the pod's working directory
    mode: int
    content: bytes


@dataclass(frozen=True)
class Mount:
    source: str  # relative to the pod's working directory, or absolute for hostPath
    destination: str  # absolute path inside the container
    read_only: bool


@dataclass
class VolumePlan:
    files: list[File] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # volume name -> where its content is
    mounts: dict[str, list[Mount]] = field(default_factory=dict)  # container name -> its mounts


def relative_path(path: Any, what: str) -> str:
    """A path inside a volume: relative, no `..`, nothing that could escape the volume's directory."""
    text = as_str(path, what)
    parts = text.split("/")
    if not text or text.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PodRejected(f"{what}: {text!r} must be a relative path without '..'")
    return text


def absolute_path(path: Any, what: str) -> str:
    text = as_str(path, what)
    normal = (text.startswith("/") and not text.startswith("//") and ".." not in text.split("/")
              and posixpath.normpath(text) == text.rstrip("/"))
    if not normal or "\n" in text:
        raise PodRejected(f"{what}: {text!r} must be a normalised absolute path")
    return posixpath.normpath(text)


def _mode(value: Any, default: int, what: str) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        raise PodRejected(f"{what}: mode {value!r} must be between 0 and 0777")
    return value


def _keyed_files(base: str, data: dict[str, bytes], volume: Mapping[str, Any], default_mode: int,
                 secret: bool, what: str) -> list[File]:
    clamp = 0o700 if secret else 0o777  # secrets are never readable by group or others on a shared system
    items = as_list(volume.get("items"), f"{what}.items")
    if not items:
        return [File(f"{base}/{relative_path(k, f'{what} key')}", default_mode & clamp, v) for k, v in data.items()]
    files = []
    for item in items:
        item = as_dict(item, f"{what}.items[]")
        key = str(item.get("key", ""))
        if key not in data:
            if volume.get("optional"):
                continue
            raise PodRejected(f'{what}: key "{key}" not found', "CreateContainerConfigError")
        mode = _mode(item.get("mode"), default_mode, f"{what}.items[{key}]")
        files.append(File(f"{base}/{relative_path(item.get('path'), f'{what}.items[].path')}", mode & clamp, data[key]))
    return files


def _downward_files(base: str, items: list[Any], pod: Mapping[str, Any], default_mode: int, what: str) -> list[File]:
    files = []
    containers = {c.get("name"): c for c in app_containers(pod) + init_containers(pod)}
    for item in items:
        item = as_dict(item, f"{what}.items[]")
        path = relative_path(item.get("path"), f"{what}.items[].path")
        if "fieldRef" in item:
            value = _field(pod, str(as_dict(item["fieldRef"], "fieldRef").get("fieldPath", "")))
        else:
            ref = as_dict(item.get("resourceFieldRef"), "resourceFieldRef")
            value = _resource_field(containers.get(ref.get("containerName"), {}), ref)
        files.append(File(f"{base}/{path}", _mode(item.get("mode"), default_mode, what), value.encode()))
    return files


def plan_volumes(pod: Mapping[str, Any], objects: Objects, projected: dict[str, dict[str, str]],
                 site: SiteConfig) -> VolumePlan:
    """Files and directories to create, and each container's mounts. `projected` is interLink's
    projectedvolumesmaps: volume name -> {file path: content}, resolved by the virtual kubelet."""
    plan = VolumePlan()
    spec = as_dict(pod.get("spec"), "spec")
    for volume in as_list(spec.get("volumes"), "spec.volumes"):
        volume = as_dict(volume, "spec.volumes[]")
        name = volume.get("name")
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            raise PodRejected(f"volume name {name!r} is not a DNS label")
        what, base = f"volume {name}", f"{VOLUMES_DIR}/{name}"
        plan.sources[name] = base
        plan.directories.append(base)
        if "configMap" in volume or "secret" in volume:
            secret = "secret" in volume
            source = as_dict(volume.get("secret" if secret else "configMap"), what)
            ref_name = str(source.get("secretName" if secret else "name", ""))
            data = objects.data("secret" if secret else "configmap", ref_name, bool(source.get("optional")))
            default = _mode(source.get("defaultMode"), 0o600 if secret else 0o644, what)
            plan.files += _keyed_files(base, data or {}, source, default, secret, what)
        elif "projected" in volume:
            plan.files += _projected(base, name, as_dict(volume["projected"], what), pod, objects, projected)
        elif "downwardAPI" in volume:
            source = as_dict(volume["downwardAPI"], what)
            default = _mode(source.get("defaultMode"), 0o644, what)
            plan.files += _downward_files(base, as_list(source.get("items"), what), pod, default, what)
        elif "emptyDir" in volume:
            pass  # a directory of the pod's own, shared by its containers
        elif "hostPath" in volume:
            path = absolute_path(as_dict(volume["hostPath"], what).get("path"), f"{what}.hostPath.path")
            if not any(path == p or path.startswith(p.rstrip("/") + "/") for p in site.host_path_prefixes):
                raise PodRejected(f"{what}: hostPath {path} is not allowed at this site", "VolumeNotAllowed")
            plan.directories.remove(base)
            plan.sources[name] = path
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise PodRejected(f"{what}: volume type {', '.join(kinds) or 'none'} is not supported",
                              "VolumeNotSupported")
    for container in init_containers(pod) + app_containers(pod):
        plan.mounts[container["name"]] = _mounts(container, plan.sources)
    return plan


def _projected(base: str, name: str, source: Mapping[str, Any], pod: Mapping[str, Any], objects: Objects,
               projected: dict[str, dict[str, str]]) -> list[File]:
    what = f"volume {name}"
    default = _mode(source.get("defaultMode"), 0o644, what)
    if name in projected:  # the virtual kubelet already resolved every source (tokens, CA, downward API)
        return [File(f"{base}/{relative_path(path, f'{what} file')}", default & 0o700, content.encode())
                for path, content in projected[name].items()]
    files: list[File] = []
    for item in as_list(source.get("sources"), f"{what}.sources"):
        item = as_dict(item, f"{what}.sources[]")
        if "configMap" in item or "secret" in item:
            secret = "secret" in item
            ref = as_dict(item.get("secret" if secret else "configMap"), what)
            # Sources we were not sent (e.g. kube-root-ca.crt) are the virtual kubelet's to provide.
            data = objects.data("secret" if secret else "configmap", str(ref.get("name", "")), True)
            if data is not None:
                files += _keyed_files(base, data, ref, default, secret, what)
        elif "downwardAPI" in item:
            files += _downward_files(base, as_list(as_dict(item["downwardAPI"], what).get("items"), what),
                                     pod, default, what)
    return files


def _mounts(container: Mapping[str, Any], sources: dict[str, str]) -> list[Mount]:
    mounts = []
    where = f"container {container.get('name')}"
    for mount in as_list(container.get("volumeMounts"), f"{where} volumeMounts"):
        mount = as_dict(mount, f"{where} volumeMounts[]")
        volume = mount.get("name")
        if volume not in sources:
            raise PodRejected(f"{where}: volumeMount refers to unknown volume {volume!r}")
        source = sources[str(volume)]
        if mount.get("subPath"):
            source = f"{source}/{relative_path(mount['subPath'], f'{where} subPath')}"
        destination = absolute_path(mount.get("mountPath"), f"{where} mountPath")
        mounts.append(Mount(source, destination, bool(mount.get("readOnly"))))
    return mounts
