"""The kubelet endpoint's gate, as the kubelet's own: every request is authenticated (a client certificate the
client CA signed, else a bearer token the apiserver vouches for by TokenReview, else anonymous only if allowed)
and then authorised by SubjectAccessReview on this node (`nodes/proxy`, `nodes/log`, ...). Both answers are
cached briefly, per token and per (identity, attributes): never one caller's answer for another."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from slurmlink.core.errors import SlurmlinkError
from slurmlink.streams.upgrade import UpgradableH11, listener_hook
from slurmlink.vk.config import KubeletConfig
from slurmlink.vk.kube import Obj, raw
from slurmlink.vk.kubeletaccess import (
    ANONYMOUS,
    Attributes,
    Identity,
    TtlCache,
    authorization_error_message,
    certificate_identity,
    forbidden_message,
    is_clean,
    request_attributes,
    with_authenticated,
)
from slurmlink.vk.metrics import KUBELET_REFUSED

log = logging.getLogger(__name__)
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - a path, not a secret
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
PEER_CERT = "peer_cert"


class ReviewFailed(SlurmlinkError):
    """The apiserver could not be asked: the request is refused (500), and nothing is cached."""


@dataclass(frozen=True)
class _TokenVerdict:
    identity: Identity | None  # None: the apiserver said the token is not valid


class KubeletAuth:
    def __init__(self, config: KubeletConfig, node: str, kube: AsyncClient,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.authentication, self.authorization = config.authentication, config.authorization
        self.node = node
        self.kube = kube
        self._tokens: TtlCache[str, _TokenVerdict] = TtlCache(clock=clock)
        self._decisions: TtlCache[tuple[Identity, Attributes], bool] = TtlCache(clock=clock)

    async def authenticate(self, peer_cert: dict[str, Any] | None, authorization: str | None) -> Identity | None:
        """Who is asking; None: nobody we may accept (401)."""
        if peer_cert and self.authentication.x509.client_ca_file:  # the TLS layer verified it against the CA
            identity = certificate_identity(peer_cert)
            if identity is not None:
                return identity
        if authorization and self.authentication.webhook.enabled:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            return await self._review_token(token.strip())  # a refused token is 401, never anonymous
        return ANONYMOUS if self.authentication.anonymous.enabled else None

    async def _review_token(self, token: str) -> Identity | None:
        key = hashlib.sha256(token.encode()).hexdigest()  # the cache holds no usable token
        cached = self._tokens.get(key)
        if cached is not None:
            return cached.identity
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            review = await raw(self.kube, "POST", TOKEN_REVIEWS, body)
        except Exception as exc:  # the apiserver away or refusing us: the caller is refused, not cached
            log.warning("kubelet endpoint: TokenReview failed, request refused: %s", exc)
            return None
        status = review.get("status") or {}
        webhook = self.authentication.webhook
        if status.get("authenticated") is True:
            identity = _reviewed_identity(status.get("user") or {})
            self._tokens.put(key, _TokenVerdict(identity), webhook.cache_ttl_seconds)
            return identity
        self._tokens.put(key, _TokenVerdict(None), webhook.cache_unauthenticated_ttl_seconds)
        return None

    async def refused(self, identity: Identity, attributes: list[Attributes]) -> Attributes | None:
        """None when any of the attributes is allowed; else those to name in the 403. Raises ReviewFailed."""
        if self.authorization.mode == "AlwaysAllow":
            return None
        for each in attributes:
            if await self._allowed(identity, each):
                return None
        return attributes[0]

    async def _allowed(self, identity: Identity, attributes: Attributes) -> bool:
        cached = self._decisions.get((identity, attributes))
        if cached is not None:
            return cached
        try:
            review = await raw(self.kube, "POST", SUBJECT_ACCESS_REVIEWS, _access_review(identity, attributes))
        except Exception as exc:
            raise ReviewFailed(str(exc)) from exc
        allowed = (review.get("status") or {}).get("allowed") is True
        ttl = (self.authorization.cache_authorized_ttl_seconds if allowed
               else self.authorization.cache_unauthorized_ttl_seconds)
        self._decisions.put((identity, attributes), allowed, ttl)
        return allowed


def _reviewed_identity(user: Obj) -> Identity:
    extra = tuple(sorted((key, tuple(values or ())) for key, values in (user.get("extra") or {}).items()))
    return Identity(str(user.get("username") or ""), with_authenticated(tuple(user.get("groups") or ())),
                    str(user.get("uid") or ""), extra)


def _access_review(identity: Identity, attributes: Attributes) -> Obj:
    spec: Obj = {"user": identity.user, "groups": list(identity.groups),
                 "resourceAttributes": {"verb": attributes.verb, "group": "", "version": "v1",
                                        "resource": attributes.resource, "subresource": attributes.subresource,
                                        "name": attributes.name}}
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.extra:
        spec["extra"] = {key: list(values) for key, values in identity.extra}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


class KubeletGuard:
    """ASGI middleware in front of the kubelet endpoint's routes: nothing reaches them unless allowed."""

    def __init__(self, app: ASGIApp, auth: KubeletAuth, open_paths: frozenset[str] = frozenset()) -> None:
        self.app, self.auth, self.open_paths = app, auth, open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = await self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _refusal(self, scope: Scope) -> Response | None:
        path = scope["path"]
        if not is_clean(path):
            return PlainTextResponse(f"{path!r} is not a clean path", 400)
        if path in self.open_paths:
            return None
        peer_cert = listener_hook(scope, PEER_CERT)
        identity = await self.auth.authenticate(peer_cert, Headers(scope=scope).get("authorization"))
        if identity is None:
            KUBELET_REFUSED.labels(code="401").inc()
            return PlainTextResponse("Unauthorized", 401)
        attributes = request_attributes(scope["method"], path, self.auth.node)
        try:
            refused = await self.auth.refused(identity, attributes)
        except ReviewFailed as exc:
            log.warning("kubelet endpoint: SubjectAccessReview failed, request refused: %s", exc)
            KUBELET_REFUSED.labels(code="500").inc()
            return PlainTextResponse(authorization_error_message(identity, attributes[0]), 500)
        if refused is not None:
            KUBELET_REFUSED.labels(code="403").inc()
            return PlainTextResponse(forbidden_message(identity, refused), 403)
        return None


class PeerCertProtocol(UpgradableH11):
    """uvicorn's HTTP/1.1 (able to switch to SPDY for exec), plus the client certificate the TLS layer
    verified, in each request's scope state."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        self.app_state = {**self.app_state, PEER_CERT: peer or None}  # a copy: per connection, not shared
