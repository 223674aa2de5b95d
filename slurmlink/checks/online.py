"""Checks that need the network (`check-config --online`), with the clients the services use themselves."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from slurmlink.checks.report import Report
from slurmlink.identity.config import IssuerSection
from slurmlink.identity.oidc import TokenRejected
from slurmlink.identity.oidc.discovery import IssuerClient
from slurmlink.identity.oidc.http import CallCounts

TIMEOUT_SECONDS = 10.0
MAX_SHOWN = 200  # characters of an unexpected answer shown in a finding


async def check_issuers(report: Report, key: str, sections: Sequence[IssuerSection]) -> None:
    """Each pinned issuer's discovery document and signing keys, fetched as the token validator does."""
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http:
        for i, section in enumerate(sections):
            # discovery never uses the client secret; the offline checks read its file
            issuer = section.build("unused" if section.client_id else None)
            client = IssuerClient(issuer, http, time.monotonic, CallCounts())
            try:
                await client.warm_up()
            except TokenRejected as exc:
                report.error(f"{key}.{i}", exc.message)
                continue
            report.ok(f"{key}.{i}", f"{issuer.issuer}: discovery document and signing keys fetched")


async def check_healthz(report: Report, key: str, url: str, verify: Any = True,
                        what: str = "the service") -> None:
    """`GET <url>/healthz`: reachable (TLS trust included) and healthy."""
    target = url.rstrip("/") + "/healthz"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, verify=verify) as http:
            answer = await http.get(target)
    except (httpx.HTTPError, OSError) as exc:
        report.error(key, f"{what} at {url} cannot be reached: {_why(exc)}")
        return
    if answer.status_code == 200:
        report.ok(key, f"{what} at {url} answers /healthz: 200")
    else:
        report.warning(key, f"{what} at {url} is reachable, but /healthz answered {answer.status_code}: "
                            f"{shorten(answer.text)}")


def shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def _why(exc: BaseException) -> str:
    return shorten(str(exc)) or type(exc).__name__
