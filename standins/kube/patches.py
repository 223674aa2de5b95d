"""PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.

Strategic merge knows the merge keys of the lists kubelets and kubectl touch (the `patchStrategy:"merge"` and
`patchMergeKey` tags of the Go types); every other list is replaced whole, as it is for lists without a patch
strategy. Pod `containerStatuses`, `initContainerStatuses` and `ephemeralContainerStatuses` have no patch strategy
(`+listType=atomic`): a patch replaces them whole, never merges them by name (kubernetes.md, "Seen on a real
kube-apiserver"). `hostIPs` is `+listType=atomic` too but keeps its `patchStrategy:"merge"` tag, which is what
strategic merge reads: it merges by `ip`.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import StatusError, bad_request

# (parent field, list field) → merge key; "*" matches any parent.
_MERGE_KEYS: dict[tuple[str, str], str] = {
    ("metadata", "ownerReferences"): "uid",
    ("spec", "containers"): "name", ("spec", "initContainers"): "name", ("spec", "ephemeralContainers"): "name",
    ("spec", "volumes"): "name", ("spec", "imagePullSecrets"): "name", ("spec", "hostAliases"): "ip",
    ("spec", "resourceClaims"): "name", ("spec", "schedulingGates"): "name",
    ("containers", "env"): "name", ("containers", "ports"): "containerPort",
    ("containers", "volumeMounts"): "mountPath", ("containers", "volumeDevices"): "devicePath",
    ("status", "conditions"): "type", ("status", "podIPs"): "ip", ("status", "hostIPs"): "ip",
    ("status", "resourceClaimStatuses"): "name", ("status", "addresses"): "type",
}
# Lists of scalars whose patch strategy is "merge": the patch's items are added, not substituted.
_MERGED_SCALAR_LISTS = {("metadata", "finalizers"), ("spec", "podCIDRs")}
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


def _merge_key(parent: str, field: str) -> str | None:
    if parent in _CONTAINER_LISTS:
        parent = "containers"
    return _MERGE_KEYS.get((parent, field))


def strategic_merge(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    merged = _merge_map(copy.deepcopy(original), patch, parent="")
    return merged if merged is not None else {}


def _merge_map(original: dict[str, Any], patch: dict[str, Any], parent: str) -> dict[str, Any] | None:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {key: value for key, value in patch.items() if key != "$patch"}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            original[field] = [item for item in original.get(field) or [] if item not in value]
            continue
        if value is None:
            original.pop(key, None)
        elif isinstance(value, dict) and isinstance(original.get(key), dict):
            merged = _merge_map(original[key], value, parent=key)
            if merged is None:
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list) and (merge_key := _merge_key(parent, key)):
            original[key] = _merge_list(original.get(key) or [], value, merge_key, key)
        elif isinstance(value, list) and (parent, key) in _MERGED_SCALAR_LISTS:
            original[key] = list(original.get(key) or []) + [item for item in value
                                                              if item not in (original.get(key) or [])]
        elif isinstance(value, dict):
            original[key] = _merge_map({}, value, parent=key) or {}
        elif isinstance(value, list):
            original[key] = _decoded(value)
        else:
            original[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(original.get(field), list):
            original[field] = _reorder(original[field], order, _merge_key(parent, field))
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        original = {key: value for key, value in original.items() if key in keep}
    return original


def _decoded(value: Any) -> Any:
    """A replaced value as the typed object stores it: a null member (a nil pointer, an omitted field) is gone."""
    if isinstance(value, dict):
        return {key: _decoded(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_decoded(item) for item in value]
    return copy.deepcopy(value)


def _merge_list(original: list[Any], patch: list[Any], merge_key: str, field: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [item for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    result = [copy.deepcopy(item) for item in original]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise bad_request(f"map: {item!r} does not contain declared merge key: {merge_key}")
        index = next((i for i, existing in enumerate(result)
                      if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(_merge_map({}, item, parent=field) or {})
        else:
            result[index] = _merge_map(result[index], item, parent=field) or {}
    return result


def _reorder(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    def identity(item: Any) -> Any:
        return item.get(merge_key) if merge_key and isinstance(item, dict) else item
    wanted = [identity(entry) if isinstance(entry, dict) else entry for entry in order]
    ranked = {value: rank for rank, value in enumerate(wanted)}
    return sorted(items, key=lambda item: ranked.get(identity(item), len(ranked)))


def merge_patch(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return _decoded(patch)  # a list is replaced whole, as by strategic merge
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_error(f"invalid JSON pointer {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _patch_error(message: str) -> StatusError:
    # The real apiserver answers a JSON patch that cannot be applied with 422 and the library's message.
    return StatusError(422, "Invalid", message)


def _walk(document: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(document, dict) and token in document:
            document = document[token]
        elif isinstance(document, list) and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            raise _patch_error(f"doc is missing path: \"/{'/'.join(tokens)}\": missing value")
    return document


def _add(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _walk(document, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        index = len(parent) if last == "-" else int(last) if last.isdigit() else -1
        if not 0 <= index <= len(parent):
            raise _patch_error(f"add operation does not apply: index {last} out of bounds")
        parent.insert(index, value)
    else:
        raise _patch_error(f"add operation does not apply: doc is missing path: \"/{'/'.join(tokens)}\"")
    return document


def _remove(document: Any, tokens: list[str]) -> tuple[Any, Any]:
    parent = _walk(document, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return document, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return document, parent.pop(int(last))
    raise _patch_error(f"remove operation does not apply: doc is missing path: \"/{'/'.join(tokens)}\"")


def json_patch(original: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise bad_request("json patch must be a JSON array of operations")
    document: Any = copy.deepcopy(original)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"invalid JSON patch operation: {operation!r}")
        op, tokens = operation["op"], _pointer(operation["path"])
        if op == "add":
            document = _add(document, tokens, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            document, _ = _remove(document, tokens)
        elif op == "replace":
            _walk(document, tokens)
            document, _ = _remove(document, tokens) if tokens else (document, None)
            document = _add(document, tokens, copy.deepcopy(operation.get("value")))
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from", ""))
            if op == "move":
                document, value = _remove(document, source)
            else:
                value = copy.deepcopy(_walk(document, source))
            document = _add(document, tokens, value)
        elif op == "test":
            if _walk(document, tokens) != operation.get("value"):
                raise _patch_error(f"testing value /{'/'.join(tokens)} failed: test failed")
        else:
            raise bad_request(f"Unexpected kind: {op}")
    if not isinstance(document, dict):
        raise _patch_error("the patch turned the object into something that is not an object")
    return document
