"""The audit log: every authenticated request with the attributes an RBAC authorizer judges it by.

As the real apiserver's RequestInfo: verb (get list watch create update patch delete deletecollection), API
group, resource, subresource, namespace and name; for a list or watch with a `metadata.name` field selector, the
name is that of the selector (so RBAC `resourceNames` can allow it). Non-resource requests (discovery) carry
their path instead. A test compares a client's requests with the rules of the role it would run under.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from .request_info import RequestInfo


@dataclass(frozen=True)
class AuditEntry:
    user: str
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # non-resource requests only


def _selected_name(field_selector: str | None) -> str:
    for term in (field_selector or "").split(","):
        match = re.match(r"^\s*metadata\.name\s*==?\s*(.*?)\s*$", term)
        if match:
            return match.group(1)
    return ""


class AuditLog:
    def __init__(self) -> None:
        self._entries: list[AuditEntry] = []
        self._lock = threading.Lock()  # the server records in its thread, tests read in theirs

    def resource(self, user: str, info: RequestInfo, field_selector: str | None) -> None:
        name = info.name or (_selected_name(field_selector) if info.verb in ("list", "watch") else "")
        self._add(AuditEntry(user, info.verb, info.group, info.plural, info.subresource, info.namespace, name))

    def non_resource(self, user: str, method: str, path: str) -> None:
        self._add(AuditEntry(user, method.lower(), path=path))

    def _add(self, entry: AuditEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, user: str | None = None) -> list[AuditEntry]:
        with self._lock:
            return [entry for entry in self._entries if user is None or entry.user == user]
