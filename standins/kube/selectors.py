"""Label selectors (equality and set-based) and field selectors, as list and watch take them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import bad_request
from .resources import ResourceType

Matcher = Callable[[dict[str, Any]], bool]

_SET = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_CMP = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(==|=|!=|>|<)\s*([A-Za-z0-9._-]*))?\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a parenthesised value set."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _requirement(text: str) -> Callable[[dict[str, str]], bool]:
    if match := _SET.match(text):
        key, op, raw = match.groups()
        values = {value.strip() for value in raw.split(",") if value.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    match = _CMP.match(text)
    if not match or (match.group(1) and match.group(3)):
        raise bad_request(f"unable to parse requirement: {text!r}")
    negate, key, op, value = match.groups()
    if op is None:
        return (lambda labels: key not in labels) if negate else (lambda labels: key in labels)
    if op in ("=", "=="):
        return lambda labels: labels.get(key) == value
    if op == "!=":
        return lambda labels: labels.get(key) != value
    try:
        bound = int(value)
    except ValueError:
        raise bad_request(f"unable to parse requirement: {text!r}: for 'gt', 'lt' operators, the value must be "
                          f"an integer") from None

    def compare(labels: dict[str, str]) -> bool:
        try:
            number = int(labels[key])
        except (KeyError, ValueError):
            return False
        return number > bound if op == ">" else number < bound
    return compare


def label_matcher(selector: str | None) -> Matcher:
    if not selector:
        return lambda obj: True
    requirements = [_requirement(part) for part in _split_top_level(selector)]

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)
    return matches


def _field_value(obj: dict[str, Any], label: str) -> str:
    if label == "source":  # core/v1 events: the field label "source" is source.component
        return str((obj.get("source") or {}).get("component", ""))
    value: Any = obj
    for step in label.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # status.podIPs: match on the primary IP
        value = value[0].get("ip") if value and isinstance(value[0], dict) else ""
    return "" if value is None else str(value)


def field_matcher(selector: str | None, rtype: ResourceType,
                  translate: Callable[[str], str] = lambda label: label) -> Matcher:
    """`translate` maps a label of this API version onto the stored shape (events.k8s.io regarding → involvedObject)."""
    if not selector:
        return lambda obj: True
    allowed = {"metadata.name", "metadata.namespace", *rtype.field_labels}
    terms: list[tuple[str, bool, str]] = []
    for part in selector.split(","):
        match = re.match(r"^\s*([^!=\s]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not match:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        label, op, value = match.groups()
        if label not in allowed:
            # The real apiserver refuses a field label the type does not register.
            raise bad_request(f'field label not supported: {label}')
        terms.append((translate(label), op != "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, label) == value) == equal for label, equal, value in terms)
    return matches
