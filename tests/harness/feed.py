"""Following a real API's change feed (`GET /slurmlink/v1/changes`, wire/changes.py) from a test."""

from __future__ import annotations

import time
from typing import Any

import httpx

from slurmlink.translate.status import pod_phase
from slurmlink.wire.changes import Changes
from slurmlink.wire.names import CHANGES_ROUTE


def changes(url: str, since: str | None, wait: float) -> Changes:
    params: dict[str, Any] = {"wait": wait}
    if since is not None:
        params["since"] = since
    answer = httpx.get(url + CHANGES_ROUTE, params=params, timeout=wait + 30)
    assert answer.status_code == 200, answer.text
    return Changes.model_validate(answer.json())


def phases_until(url: str, uid: str, cursor: str, last: str, deadline: float) -> tuple[list[str], str]:
    """The phases the feed tells for pod `uid`, one long poll after another, until `last` (each pod at most once
    per answer)."""
    phases: list[str] = []
    while not phases or phases[-1] != last:
        assert time.monotonic() < deadline, f"the feed told {phases} and not yet {last}"
        answer = changes(url, cursor, 20)
        assert not answer.reset
        assert [p.uid for p in answer.pods].count(uid) <= 1
        phases += [pod_phase(p.containers, p.init_containers).phase for p in answer.pods if p.uid == uid]
        cursor = answer.cursor
    return phases, cursor
