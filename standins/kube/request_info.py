"""URL → what is being asked, like the apiserver's RequestInfoFactory (verb, group, version, namespace, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import path_not_found


@dataclass(frozen=True)
class RequestInfo:
    verb: str  # get list watch create update patch delete deletecollection
    group: str
    version: str
    namespace: str  # "" for cluster-scoped types and for lists across all namespaces
    plural: str
    name: str
    subresource: str


def parse(method: str, path: str, watch_param: str | None) -> RequestInfo:
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise path_not_found()
    namespace = ""
    # /namespaces/{ns}/{plural}/... is namespaced; /namespaces and /namespaces/{name}[/status] is the Namespace type.
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise path_not_found()
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if method in ("GET", "HEAD"):
        verb = "get" if name else ("watch" if watch_param in ("true", "1") else "list")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        raise path_not_found()
    return RequestInfo(verb, group, version, namespace, plural, name, subresource)
