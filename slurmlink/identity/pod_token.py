"""The user's Check-in access token, travelling with the pod in a Secret the pod names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slurmlink.core.errors import PodRejected
from slurmlink.core.kube import object_data
from slurmlink.wire.names import TOKEN_SECRET_ANNOTATION

ACCESS_TOKEN_KEY = "access_token"  # noqa: S105 - a key name


def token_secret(pod: Mapping[str, Any], secrets: list[dict[str, Any]]) -> dict[str, Any]:
    """The Secret the pod's annotation names, as sent with the pod; PodRejected says what is missing."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    name = annotations.get(TOKEN_SECRET_ANNOTATION)
    if not name:
        raise PodRejected(f"the pod names no token Secret: set the annotation {TOKEN_SECRET_ANNOTATION} to the "
                          f"name of a Secret holding your Check-in access token under {ACCESS_TOKEN_KEY!r}",
                          "NoToken")
    secret = next((s for s in secrets if (s.get("metadata") or {}).get("name") == name), None)
    if secret is None:
        raise PodRejected(f"the token Secret {name!r} was not sent with the pod", "NoToken")
    return secret


def access_token(pod: Mapping[str, Any], secrets: list[dict[str, Any]]) -> str:
    """The access token from the Secret named by the pod's annotation; PodRejected says what is missing."""
    secret = token_secret(pod, secrets)
    name = (secret.get("metadata") or {}).get("name")
    value = object_data({**secret, "kind": "Secret"}, f"token Secret {name!r}").get(ACCESS_TOKEN_KEY, b"")
    try:
        token = value.decode().strip()
    except UnicodeDecodeError as exc:
        raise PodRejected(f"the token Secret {name!r}: {ACCESS_TOKEN_KEY!r} is not text", "NoToken") from exc
    if not token:
        raise PodRejected(f"the token Secret {name!r} has no key {ACCESS_TOKEN_KEY!r}", "NoToken")
    return token
