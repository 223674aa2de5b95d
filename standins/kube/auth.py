"""Authentication: static bearer tokens, ServiceAccount tokens, client certificates signed by the stand-in's CA.

As the real apiserver with anonymous auth off: a request with no credentials, or with a bearer token that is not
valid, is 401 (a bad token is 401 even when a good client certificate comes with it). There is no authorization
layer: every authenticated identity may do everything (no RBAC, no Node authorizer, no NodeRestriction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import unauthorized
from .pki import subject_identity
from .registry import Caller
from .store import Store
from .tokens import TokenIssuer

AUTHENTICATED = "system:authenticated"


@dataclass
class Authenticator:
    store: Store
    issuer: TokenIssuer
    tokens: dict[str, Caller] = field(default_factory=dict)

    def authenticate(self, authorization: str | None, peer_cert: dict[str, Any] | None) -> Caller:
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise unauthorized()
            token = token.strip()
            if token in self.tokens:
                return self.tokens[token]
            verified = self.issuer.verify(self.store, token)
            if verified is None:
                raise unauthorized()
            return Caller(*verified)
        if peer_cert:  # the TLS layer already checked it against our CA
            user, groups = subject_identity(peer_cert)
            return Caller(user, (*groups, AUTHENTICATED))
        raise unauthorized()
