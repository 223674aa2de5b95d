"""Field validation the real apiserver applies before storing: names, labels, and the pod rules kubectl hits."""

from __future__ import annotations

import re
from typing import Any

from .errors import invalid
from .resources import ResourceType

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
DNS_LABEL = re.compile(rf"^{_LABEL}$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

SUBDOMAIN_MESSAGE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                     "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                     "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MESSAGE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
                 "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation "
                 "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
# Namespaces and container names are DNS labels; CSRs may be any path segment; the rest DNS subdomains.
_NAME_RULES = {"namespaces": "label", "certificatesigningrequests": "segment"}


def name_problems(plural: str, name: str, prefix: bool = False) -> list[tuple[str, str]]:
    """The name rule of the type; `prefix` checks a generateName, as ValidateObjectMeta does: the same rule, with
    a trailing "-" masked (so "pod-" passes and "pod." does not)."""
    field, shown = "metadata.generateName" if prefix else "metadata.name", name
    rule = _NAME_RULES.get(plural, "subdomain")
    if rule == "segment":
        ok = (prefix or name not in (".", "..")) and "/" not in name and "%" not in name
        return [] if ok else [(field, f'Invalid value: "{shown}": may not contain \'/\' or \'%\'')]
    if prefix and len(name) > 1 and name.endswith("-"):
        name = name[:-2] + "a"  # maskTrailingDash, exactly as the real one (it drops two characters)
    pattern, message, limit = ((DNS_LABEL, LABEL_MESSAGE, 63) if rule == "label"
                               else (SUBDOMAIN, SUBDOMAIN_MESSAGE, 253))
    if len(name) > limit:
        return [(field, f'Invalid value: "{shown}": must be no more than {limit} characters')]
    return [] if pattern.match(name) else [(field, f'Invalid value: "{shown}": {message}')]


def label_problems(labels: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not SUBDOMAIN.match(prefix)) or not _LABEL_NAME.match(name) or len(name) > 63:
            problems.append(("metadata.labels", f'Invalid value: "{key}": name part must consist of alphanumeric '
                             "characters, '-', '_' or '.'"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(("metadata.labels", f'Invalid value: "{value}": a valid label must be an empty string '
                             "or consist of alphanumeric characters, '-', '_' or '.'"))
    return problems


def _pod_problems(pod: dict[str, Any]) -> list[tuple[str, str]]:
    spec = pod.get("spec") or {}
    problems: list[tuple[str, str]] = []
    containers = spec.get("containers") or []
    if not containers:
        problems.append(("spec.containers", "Required value"))
    volumes = {volume.get("name") for volume in spec.get("volumes") or []}
    seen: set[str] = set()
    for list_name in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(list_name) or []):
            where = f"spec.{list_name}[{index}]"
            name = container.get("name", "")
            if not name:
                problems.append((f"{where}.name", "Required value"))
            elif not DNS_LABEL.match(name):
                problems.append((f"{where}.name", f'Invalid value: "{name}": {LABEL_MESSAGE}'))
            elif name in seen:
                problems.append((f"{where}.name", f'Duplicate value: "{name}"'))
            seen.add(name)
            if not container.get("image"):
                problems.append((f"{where}.image", "Required value"))
            for mount_index, mount in enumerate(container.get("volumeMounts") or []):
                if mount.get("name") not in volumes:
                    problems.append((f"{where}.volumeMounts[{mount_index}].name",
                                     f'Not found: "{mount.get("name")}"'))
    if spec.get("restartPolicy") not in ("Always", "OnFailure", "Never"):
        problems.append(("spec.restartPolicy", f'Unsupported value: "{spec.get("restartPolicy")}": supported values: '
                         '"Always", "OnFailure", "Never"'))
    return problems


def _service_problems(service: dict[str, Any]) -> list[tuple[str, str]]:
    spec = service.get("spec") or {}
    ports = spec.get("ports") or []
    problems: list[tuple[str, str]] = []
    if not ports and spec.get("clusterIP") != "None":
        problems.append(("spec.ports", "Required value"))
    names: set[str] = set()
    for index, port in enumerate(ports):
        number, name = port.get("port"), port.get("name") or ""
        if not isinstance(number, int) or not 0 < number < 65536:
            problems.append((f"spec.ports[{index}].port", f"Invalid value: {number}: must be between 1 and 65535, "
                             "inclusive"))
        if len(ports) > 1 and not name:
            problems.append((f"spec.ports[{index}].name", "Required value"))
        elif name in names:
            problems.append((f"spec.ports[{index}].name", f'Duplicate value: "{name}"'))
        names.add(name)
    return problems


def validate_new(rtype: ResourceType, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    problems = label_problems(meta.get("labels") or {})
    if not (rtype.kind == "Event" and not rtype.group):
        # core/v1 Events keep their legacy validation, which checks no name: "pod." is a fine generateName there,
        # while events.k8s.io/v1 refuses it with 422 (kubernetes.md, "Seen on a real kube-apiserver").
        problems = name_problems(rtype.plural, meta["name"]) + problems
        if meta.get("generateName"):
            problems = name_problems(rtype.plural, meta["generateName"], prefix=True) + problems
    if rtype.kind == "Pod":
        problems += _pod_problems(obj)
    elif rtype.kind == "Service":
        problems += _service_problems(obj)
    if problems:
        raise invalid(rtype.kind, rtype.group, meta["name"], problems)


# What a pod update may change (the real message lists exactly these).
_POD_UPDATE_MESSAGE = ("Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                       "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
                       "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set "
                       "to 1 if it was previously negative)")


def validate_pod_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Pod specs are immutable but for images, activeDeadlineSeconds and added tolerations.

    kubernetes.md: changing spec.nodeName of a bound pod → 422 (this rule covers it).
    """
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    allowed = {**old_spec, "activeDeadlineSeconds": new_spec.get("activeDeadlineSeconds"),
               "tolerations": new_spec.get("tolerations")}
    if allowed["activeDeadlineSeconds"] is None:
        allowed.pop("activeDeadlineSeconds")
    if allowed["tolerations"] is None:
        allowed.pop("tolerations")
    for list_name in ("containers", "initContainers"):
        if list_name in old_spec and len(new_spec.get(list_name) or []) == len(old_spec[list_name]):
            allowed[list_name] = [{**before, "image": after.get("image")}
                                  for before, after in zip(old_spec[list_name], new_spec[list_name], strict=True)]
    tolerations_kept = all(item in (new_spec.get("tolerations") or []) for item in old_spec.get("tolerations") or [])
    if allowed != new_spec or not tolerations_kept:
        raise invalid("Pod", "", new["metadata"]["name"], [("spec", _POD_UPDATE_MESSAGE)])
