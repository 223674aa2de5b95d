"""Who may call the kubelet endpoint, the pure parts: the identity a request carries, the `nodes` attributes a
request is authorised against (the kubelet's own mapping), the answers it refuses with, and a small TTL cache.

The mapping follows the kubelet (docs "Kubelet authentication/authorization", with KubeletFineGrainedAuthz):
the verb comes from the HTTP method, the resource is always `nodes` named after this node, and the subresource
from the path: /stats, /metrics, /logs, /spec, /checkpoint have their own; /pods, /runningpods, /healthz and
/configz are checked for their own first and fall back to `proxy`; everything else (/containerLogs, /exec,
/run, ...) is `proxy`.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

AUTHENTICATED = "system:authenticated"
VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_OWN_SUBRESOURCE = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"), ("/spec", "spec"),
                    ("/checkpoint", "checkpoint"))
_FINE_GRAINED = (("/pods", "pods"), ("/runningpods", "pods"), ("/healthz", "healthz"), ("/configz", "configz"))


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()  # TokenReview's user.extra, passed on to SubjectAccessReview


ANONYMOUS = Identity("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class Attributes:
    verb: str
    subresource: str
    name: str  # the node's name
    resource: str = "nodes"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def is_clean(path: str) -> bool:
    """No `.`/`..` segments or doubled slashes: the path authorised is the path served."""
    if path == "/":
        return True
    return path.startswith("/") and "//" not in path and posixpath.normpath(path) == path.rstrip("/")


def request_attributes(method: str, path: str, node: str) -> list[Attributes]:
    """The attributes to authorise, in order; the request is allowed when any one of them is."""
    verb = VERBS.get(method.upper(), "")  # the kubelet, too, leaves other methods' verb empty (then denied)
    for prefix, subresource in _OWN_SUBRESOURCE:
        if _under(path, prefix):
            return [Attributes(verb, subresource, node)]
    for prefix, subresource in _FINE_GRAINED:
        if _under(path, prefix):
            return [Attributes(verb, subresource, node), Attributes(verb, "proxy", node)]
    return [Attributes(verb, "proxy", node)]


def certificate_identity(peer_cert: dict[str, Any]) -> Identity | None:
    """User (CN) and groups (each O) of a verified client certificate, as `ssl` reports it (getpeercert)."""
    user, groups = "", []
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return Identity(user, with_authenticated(tuple(groups))) if user else None


def with_authenticated(groups: tuple[str, ...]) -> tuple[str, ...]:
    # Every authenticated user is in system:authenticated (the apiserver's and kubelet's group adder).
    return groups if AUTHENTICATED in groups else (*groups, AUTHENTICATED)


def forbidden_message(identity: Identity, attributes: Attributes) -> str:
    return (f"Forbidden (user={identity.user}, verb={attributes.verb}, resource={attributes.resource}, "
            f"subresource={attributes.subresource})")


def authorization_error_message(identity: Identity, attributes: Attributes) -> str:
    return (f"Authorization error (user={identity.user}, verb={attributes.verb}, resource={attributes.resource}, "
            f"subresource={attributes.subresource})")


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Answers kept for a time each; the oldest go first when full. Not shared between keys: an entry is only
    ever read back for the very key it was stored under."""

    def __init__(self, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[K, tuple[float, V]] = {}
        self._max = max_entries
        self._clock = clock

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        if ttl <= 0:
            return
        now = self._clock()
        if len(self._entries) >= self._max:
            for old in [k for k, (expires, _) in self._entries.items() if expires <= now]:
                del self._entries[old]
            while len(self._entries) >= self._max:
                del self._entries[next(iter(self._entries))]  # insertion order: the oldest first
        self._entries.pop(key, None)
        self._entries[key] = (now + ttl, value)

    def __len__(self) -> int:
        return len(self._entries)
