"""One HTTP exchange with an issuer, bounded in time and size, and a count of the calls made."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import TokenRejected
from .issuer import IssuerConfig

MAX_RESPONSE_BYTES = 512 * 1024  # cap on discovery/JWKS/userinfo/introspection bodies


@dataclass
class CallCounts:
    """HTTP calls made to issuers, by kind (for tests and metrics)."""

    discovery: int = 0
    jwks: int = 0
    userinfo: int = 0
    introspection: int = 0


async def exchange(http: httpx.AsyncClient, cfg: IssuerConfig, method: str, url: str, reason: str, what: str, *,
                   headers: dict[str, str], data: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP exchange bounded in total time (not only per socket operation) and in body size."""
    try:
        async with asyncio.timeout(cfg.timeout_seconds):
            async with http.stream(method, url, headers=headers, data=data, timeout=cfg.timeout_seconds,
                                   follow_redirects=False) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise TokenRejected(reason, f"The {what} answered with more than "
                                            f"{MAX_RESPONSE_BYTES} bytes.")
                return response.status_code, bytes(body)
    except TimeoutError:
        raise TokenRejected(reason, f"The {what} did not answer within {cfg.timeout_seconds:g} s; "
                            "try again later.") from None
    except httpx.HTTPError as exc:
        raise TokenRejected(reason, f"The {what} could not be reached ({type(exc).__name__}); "
                            "try again later.") from None


async def get_json(http: httpx.AsyncClient, cfg: IssuerConfig, url: str, reason: str, what: str) -> dict[str, Any]:
    """A GET that must answer 200 with a JSON object."""
    status, body = await exchange(http, cfg, "GET", url, reason, what, headers={"Accept": "application/json"})
    if status != 200:
        raise TokenRejected(reason, f"The {what} answered HTTP {status}; try again later.")
    return json_object(body, reason, what)


def json_object(body: bytes, reason: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise TokenRejected(reason, f"The {what} answered with something that is not JSON; try again later.") from None
    if not isinstance(value, dict):
        raise TokenRejected(reason, f"The {what} answered with JSON that is not an object.")
    return value
