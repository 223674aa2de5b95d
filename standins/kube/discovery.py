"""Discovery documents (legacy and aggregated), /version, and the small OpenAPI v3 that kubectl consults.

kubectl asks for aggregated discovery (apidiscovery.k8s.io/v2) first and falls back to the legacy documents; both
are served. Of OpenAPI only v3 is served, and only what kubectl needs to see that the server validates fields
itself (the `fieldValidation` parameter on PATCH); /openapi/v2 answers 404, which kubectl tolerates.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import GROUPS, TYPES, ResourceType

VERSION = {"major": "1", "minor": "36", "emulationMajor": "1", "emulationMinor": "36", "minCompatibilityMajor": "1",
           "minCompatibilityMinor": "35", "gitVersion": "v1.36.0-slurmlink-standin",
           "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
           "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25.0", "compiler": "gc", "platform": "linux/amd64"}
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
# Subresources whose response is another kind than their parent.
_SUB_KINDS = {("pods", "binding"): ("", "v1", "Binding"),
              ("serviceaccounts", "token"): ("authentication.k8s.io", "v1", "TokenRequest")}


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept and "g=apidiscovery.k8s.io;v=v2" in accept.replace(" ", "")


def _served(group: str) -> list[ResourceType]:
    return [rtype for rtype in GROUPS[group] if rtype.verbs]


def _sub_kind(rtype: ResourceType, sub: str) -> tuple[str, str, str]:
    return _SUB_KINDS.get((rtype.plural, sub), (rtype.group, rtype.version, rtype.kind))


def resource_list(group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for rtype in _served(group):
        if rtype.version != version:
            continue
        entry: dict[str, Any] = {"name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
                                 "kind": rtype.kind, "verbs": list(rtype.verbs)}
        if rtype.short_names:
            entry["shortNames"] = list(rtype.short_names)
        if rtype.categories:
            entry["categories"] = list(rtype.categories)
        resources.append(entry)
        for sub, verbs in rtype.subresources.items():
            sub_group, sub_version, sub_kind = _sub_kind(rtype, sub)
            sub_entry = {"name": f"{rtype.plural}/{sub}", "singularName": "", "namespaced": rtype.namespaced,
                         "kind": sub_kind, "verbs": list(verbs)}
            if sub_group != rtype.group:
                sub_entry.update(group=sub_group, version=sub_version)
            resources.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(group: str) -> dict[str, Any]:
    version = GROUPS[group][0].version
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in GROUPS if g]}


def api_group(group: str) -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group)}


def _aggregated_resource(rtype: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rtype.plural, "responseKind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
        "scope": "Namespaced" if rtype.namespaced else "Cluster", "singularResource": rtype.singular,
        "verbs": list(rtype.verbs)}
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        entry["categories"] = list(rtype.categories)
    if rtype.subresources:
        entry["subresources"] = []
        for sub, verbs in rtype.subresources.items():
            group, version, kind = _sub_kind(rtype, sub)
            entry["subresources"].append({"subresource": sub, "verbs": list(verbs),
                                          "responseKind": {"group": group, "version": version, "kind": kind}})
    return entry


def aggregated(core: bool) -> dict[str, Any]:
    items = []
    for group in GROUPS:
        if (group == "") != core:
            continue
        version = GROUPS[group][0].version
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": [{
            "version": version, "freshness": "Current",
            "resources": [_aggregated_resource(rtype) for rtype in _served(group)]}]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


# --- OpenAPI v3 --------------------------------------------------------------------------------------------------
def _gv_path(group: str) -> str:
    version = GROUPS[group][0].version
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _openapi_doc(group: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rtype in TYPES:
        if rtype.group != group or "patch" not in rtype.verbs:
            continue
        scope = "namespaces/{namespace}/" if rtype.namespaced else ""
        paths[f"/{_gv_path(group)}/{scope}{rtype.plural}/{{name}}"] = {"patch": {
            "operationId": f"patch{rtype.kind}",
            "x-kubernetes-group-version-kind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
            "parameters": [{"name": name, "in": "query", "schema": {"type": "string"}}
                           for name in ("dryRun", "fieldManager", "fieldValidation", "force")],
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]}, "paths": paths}


def openapi_documents() -> dict[str, dict[str, Any]]:
    return {_gv_path(group): _openapi_doc(group) for group in GROUPS}


def openapi_root(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def digest(doc: dict[str, Any]) -> str:
        return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
    return {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest(doc)}"}
                      for path, doc in documents.items()}}
