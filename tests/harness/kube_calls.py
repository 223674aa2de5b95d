"""Every Kubernetes request a package's code can make, read from its source (an AST scan, no run): lightkube
calls on a client named `kube`/`self.kube` (`kube.patch(Node.Status, ...)`, `kube.create(Lease.from_dict(...))`)
and `raw(client, METHOD, path)` calls, whose path (a literal, an f-string, a module constant) is resolved as the
apiserver would by the Kubernetes stand-in's RequestInfo parser. The chart's RBAC test uses it to check that its
recorded vk run made every kind of request the code has (a new call would otherwise escape the comparison).
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from standins.kube.errors import StatusError
from standins.kube.request_info import parse

# lightkube's client methods and the RBAC verb each request is judged by
LIGHTKUBE_VERBS = {"get": "get", "list": "list", "watch": "watch", "create": "create", "patch": "patch",
                   "replace": "update", "apply": "patch", "delete": "delete", "deletecollection": "deletecollection"}


@dataclass(frozen=True)
class KubeCall:
    group: str
    resource: str
    subresource: str
    verb: str
    where: str  # file:line

    @property
    def attributes(self) -> tuple[str, str, str, str]:
        return self.group, self.resource, self.subresource, self.verb


def _resource_kinds(node: ast.expr, module: ModuleType) -> list[Any]:
    """`Pod`, `Node.Status`, `Lease.from_dict(...)` or `KINDS[kind]` (a module's dict of them) → the lightkube
    resource classes it can be."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_dict":
        node = node.func.value
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        table = getattr(module, node.value.id, None)
        return [kind for kind in table.values() if hasattr(kind, "_api_info")] if isinstance(table, dict) else []
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return []
    value = getattr(module, node.id, None)
    for part in parts:
        value = getattr(value, part, None)
    return [value] if hasattr(value, "_api_info") else []


def _sample_path(node: ast.expr, module: ModuleType) -> str | None:
    """A path the expression can take: placeholders become `x`, module constants their value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        value = getattr(module, node.id, None)
        return value if isinstance(value, str) else None
    if isinstance(node, ast.JoinedStr):
        text = ""
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                constant = _sample_path(part.value, module) if isinstance(part.value, ast.Name) else None
                text += constant if constant and constant.startswith("/") else "x"
            else:
                text += _sample_path(part, module) or ""
        return text
    return None


def _is_kube_client(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return name == "kube"


def scan(package: str) -> tuple[list[KubeCall], list[str]]:
    """(resource requests, non-resource paths) the package's modules can make."""
    calls: list[KubeCall] = []
    non_resource: list[str] = []
    root = Path(importlib.import_module(package).__file__ or "").parent
    for path in sorted(root.glob("*.py")):
        module = importlib.import_module(f"{package}.{path.stem}")
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.name}:{node.lineno}"
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr in LIGHTKUBE_VERBS and _is_kube_client(func.value)
                    and node.args):
                kinds = _resource_kinds(node.args[0], module)
                if not kinds:
                    raise AssertionError(f"{where}: a Kubernetes call on a resource this scan cannot name")
                calls += [KubeCall(kind._api_info.resource.group, kind._api_info.plural, kind._api_info.action or "",
                                   LIGHTKUBE_VERBS[func.attr], where) for kind in kinds]
            elif isinstance(func, ast.Name) and func.id == "raw" and len(node.args) >= 3:
                method, path_node = node.args[1], node.args[2]
                sample = _sample_path(path_node, module)
                if not (isinstance(method, ast.Constant) and isinstance(method.value, str)) or sample is None:
                    raise AssertionError(f"{where}: a raw Kubernetes request this scan cannot resolve")
                try:
                    request = parse(method.value, sample, None)
                except StatusError:  # not under /api or /apis: discovery and the like
                    non_resource.append(sample)
                    continue
                calls.append(KubeCall(request.group, request.plural, request.subresource, request.verb, where))
    return calls, non_resource
