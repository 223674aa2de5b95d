"""Keeping a user's access token usable for as long as their pod needs it.

The pod's token Secret may hold, besides `access_token`, a `refresh_token` with the `client_id` (and
`client_secret`, for a confidential client) it was issued to. Before the access token comes within
`margin` of its expiry, it is refreshed at the token endpoint of its issuer, which must be pinned:
the endpoint comes from that issuer's discovery document, never from the Secret, so the service never
sends a credential anywhere else. A Secret the user updates replaces what was held.

When refreshing fails for good (the refresh token was revoked or expired, `invalid_grant`), `problem`
says so in words for the pod's status, and `token()` keeps answering the last access token until it
expires: the user can fix it by updating the Secret with a fresh token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from slurmlink.identity.oidc import TokenRejected, TokenValidator
from slurmlink.translate.env import object_data

REFRESH_MARGIN_SECONDS = 300.0


@dataclass(frozen=True)
class Credentials:
    access_token: str
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> Credentials:
        """From the pod's token Secret (PodRejected if it is not a valid Secret)."""
        data = object_data({**secret, "kind": "Secret"}, "token Secret")
        values = {key: raw.decode(errors="replace").strip() for key, raw in data.items()}
        return cls(values.get("access_token", ""), values.get("refresh_token") or None,
                   values.get("client_id") or None, values.get("client_secret") or None)


def unverified_claims(token: str) -> dict[str, Any]:
    """A JWT's payload, NOT verified: only to learn when to refresh and where; the validator decides trust."""
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError, binascii.Error):
        return {}


def token_expiry(token: str) -> float | None:
    """A JWT's `exp`, NOT verified (to know when to stop sending or start refreshing it), or None."""
    exp = unverified_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) else None


class TokenSource:
    def __init__(self, credentials: Credentials, validator: TokenValidator, http: httpx.AsyncClient,
                 *, margin: float = REFRESH_MARGIN_SECONDS, clock: Callable[[], float] = time.time,
                 timeout: float = 10.0) -> None:
        self.credentials = credentials
        self.validator = validator
        self.http = http
        self.margin = margin
        self.clock = clock
        self.timeout = timeout
        self.problem = ""  # why the token can no longer be kept fresh, for the pod's status
        self.refreshes = 0
        self._lock = asyncio.Lock()

    def update(self, credentials: Credentials) -> None:
        """The user updated their Secret: use what it holds now."""
        if credentials != self.credentials and credentials.access_token:
            self.credentials = credentials
            self.problem = ""

    def expires_at(self) -> float | None:
        return token_expiry(self.credentials.access_token)

    async def token(self) -> str:
        """An access token that is valid for at least `margin` more seconds when that can be had."""
        async with self._lock:
            expires = self.expires_at()
            fresh_enough = expires is None or expires - self.clock() > self.margin
            if not fresh_enough and self.credentials.refresh_token and not self.problem:
                await self._refresh()
            return self.credentials.access_token

    async def _refresh(self) -> None:
        creds = self.credentials
        issuer = str(unverified_claims(creds.access_token).get("iss", ""))
        try:
            endpoint = await self.validator.token_endpoint(issuer)
        except TokenRejected as exc:
            self.problem = f"cannot refresh the access token: {exc.message}"
            return
        form = {"grant_type": "refresh_token", "refresh_token": creds.refresh_token or ""}
        auth = (creds.client_id or "", creds.client_secret) if creds.client_secret else None
        if auth is None and creds.client_id:
            form["client_id"] = creds.client_id
        try:
            response = await self.http.post(endpoint, data=form, auth=auth if auth else httpx.USE_CLIENT_DEFAULT,
                                            timeout=self.timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return  # the issuer did not answer properly: try again at the next use, keep the old token
        if response.status_code == 200 and isinstance(body.get("access_token"), str):
            self.credentials = replace(creds, access_token=body["access_token"],
                                       refresh_token=body.get("refresh_token") or creds.refresh_token)
            self.refreshes += 1
        elif response.status_code in (400, 401):
            error = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
            self.problem = (f"the refresh token was refused ({error}): update the token Secret with a new "
                            "access and refresh token")
