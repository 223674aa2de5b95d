"""core/v1 and events.k8s.io/v1 Events are one stored object in two shapes, as in the real apiserver."""

from __future__ import annotations

from typing import Any

from .errors import invalid

# events.k8s.io/v1 field → core/v1 field (the real conversion functions).
_RENAMES = {"regarding": "involvedObject", "note": "message", "reportingController": "reportingComponent",
            "deprecatedSource": "source", "deprecatedFirstTimestamp": "firstTimestamp",
            "deprecatedLastTimestamp": "lastTimestamp", "deprecatedCount": "count"}
_BACK = {core: new for new, core in _RENAMES.items()}


def to_core(event: dict[str, Any]) -> dict[str, Any]:
    core = {_RENAMES.get(key, key): value for key, value in event.items()}
    core["apiVersion"], core["kind"] = "v1", "Event"
    return core


def from_core(event: dict[str, Any]) -> dict[str, Any]:
    converted = {_BACK.get(key, key): value for key, value in event.items()}
    converted["apiVersion"], converted["kind"] = "events.k8s.io/v1", "Event"
    return converted


def field_label_to_core(label: str) -> str:
    head, _, rest = label.partition(".")
    return f"{_RENAMES.get(head, head)}.{rest}" if rest else _RENAMES.get(label, label)


def validate_core(event: dict[str, Any], via_events_v1: bool) -> None:
    name = event["metadata"]["name"]
    namespace = event["metadata"].get("namespace", "")
    involved = event.get("involvedObject") or {}
    problems = []
    # The real validation: a namespaced event must be about an object in the same namespace.
    if involved.get("namespace") and involved["namespace"] != namespace:
        problems.append(("involvedObject.namespace", f'Invalid value: "{involved["namespace"]}": does not match '
                         "event.namespace"))
    if via_events_v1:
        # events.k8s.io/v1 insists on these (the legacy API does not).
        for field, label in (("eventTime", "eventTime"), ("reportingComponent", "reportingController"),
                             ("reportingInstance", "reportingInstance"), ("action", "action"), ("reason", "reason")):
            if not event.get(field):
                problems.append((label, "Required value"))
    if problems:
        raise invalid("Event", "events.k8s.io" if via_events_v1 else "", name, problems)
