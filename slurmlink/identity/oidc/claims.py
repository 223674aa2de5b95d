"""The issuer's claims endpoints: userinfo and token introspection (RFC 7662).

Check-in releases some claims (`eduperson_entitlement`) only there, and an opaque token can be checked only there.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

from .discovery import IssuerClient
from .errors import TokenRejected, show
from .http import json_object


async def issuer_claims(client: IssuerClient, token: str, sub: str) -> dict[str, Any]:
    """Claims only the issuer's endpoints release (entitlements); its subject must be the token's."""
    cfg = client.cfg
    if cfg.introspects:
        extra = await introspect(client, token)
    elif cfg.userinfo:
        extra = await userinfo(client, token)
    else:
        return {}
    if extra.get("sub") is not None and extra["sub"] != sub:
        raise TokenRejected("subject_mismatch", f"Issuer {cfg.issuer} describes a different user than the "
                            "token names; refusing both.")
    return extra


async def userinfo(client: IssuerClient, token: str) -> dict[str, Any]:
    cfg = client.cfg
    what = f"userinfo of {cfg.issuer}"
    url = await client.endpoint("userinfo_endpoint", "userinfo_failed")
    client.counts.userinfo += 1
    status, body = await client.request("GET", url, "userinfo_failed", what,
                                        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    if status in (401, 403):
        raise TokenRejected("inactive", f"Issuer {cfg.issuer} no longer accepts this token (revoked, logged out "
                            "or expired there); get a new one.")
    if status != 200:
        raise TokenRejected("userinfo_failed", f"The {what} answered HTTP {status}; try again later.")
    claims = json_object(body, "userinfo_failed", what)
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenRejected("userinfo_failed", f"The {what} answered without a subject (sub).")
    return claims


async def introspect(client: IssuerClient, token: str) -> dict[str, Any]:
    cfg = client.cfg
    assert cfg.client_id is not None and cfg.client_secret is not None  # for mypy: introspects guarantees it
    what = f"introspection at {cfg.issuer}"
    url = await client.endpoint("introspection_endpoint", "introspection_failed")
    # RFC 6749 §2.3.1: client_secret_basic form-encodes id and secret before base64.
    pair = f"{urllib.parse.quote(cfg.client_id, safe='')}:{urllib.parse.quote(cfg.client_secret, safe='')}"
    headers = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode(), "Accept": "application/json"}
    client.counts.introspection += 1
    status, body = await client.request("POST", url, "introspection_failed", what, headers=headers,
                                        data={"token": token, "token_type_hint": "access_token"})
    if status in (400, 401, 403):
        raise TokenRejected("introspection_failed", f"The {what} refused this service's client credentials "
                            f"(HTTP {status}); the operator must fix client_id/client_secret.")
    if status != 200:
        raise TokenRejected("introspection_failed", f"The {what} answered HTTP {status}; try again later.")
    result = json_object(body, "introspection_failed", what)
    if result.get("active") is not True:
        raise TokenRejected("inactive", f"Issuer {cfg.issuer} reports this token as not active (revoked or "
                            "expired); get a new one.")
    if result.get("iss") is not None and result["iss"] != cfg.issuer:
        raise TokenRejected("introspection_failed", f"The {what} reports issuer {show(result['iss'])}.")
    return result
