"""Reading Kubernetes objects (plain dicts, as Kubernetes serialises them) safely: names, fields, data.

Every reader raises PodRejected naming the bad field, so a bad object fails its pod, never the service.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from slurmlink.core.errors import PodRejected

DNS_LABEL = re.compile(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")  # RFC 1123 label
DNS_SUBDOMAIN = re.compile(r"\A(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
UID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9-]{0,62}\Z")


def is_dns_label(text: object) -> bool:
    return isinstance(text, str) and DNS_LABEL.match(text) is not None


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PodRejected(f"{what} must be an object")
    return value


def as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PodRejected(f"{what} must be a list")
    return value


def as_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise PodRejected(f"{what} must be a string")
    if "\x00" in value:
        raise PodRejected(f"{what} contains a NUL byte")
    return value


def object_data(obj: Mapping[str, Any], what: str) -> dict[str, bytes]:
    """The data of a ConfigMap or Secret as bytes: Secret `data` and ConfigMap `binaryData` are base64."""
    is_secret = obj.get("kind") == "Secret" or "stringData" in obj or "type" in obj
    result: dict[str, bytes] = {}
    for key, value in as_dict(obj.get("binaryData"), f"{what}.binaryData").items():
        result[key] = _b64(value, f"{what}.binaryData.{key}")
    for key, value in as_dict(obj.get("data"), f"{what}.data").items():
        text = as_str(value, f"{what}.data.{key}")
        result[key] = _b64(text, f"{what}.data.{key}") if is_secret else text.encode()
    for key, value in as_dict(obj.get("stringData"), f"{what}.stringData").items():
        result[key] = as_str(value, f"{what}.stringData.{key}").encode()
    return result


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(as_str(value, what), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PodRejected(f"{what} is not valid base64") from exc
