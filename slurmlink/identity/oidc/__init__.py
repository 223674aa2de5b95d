"""Access-token validation against pinned OIDC issuers (EGI Check-in presets included).

    issuer.py     IssuerConfig, the Check-in presets, which URLs may be trusted
    discovery.py  IssuerClient: one issuer's discovery document and JWKS, fetched and cached
    http.py       one bounded HTTP exchange with an issuer, and the count of calls made
    keys.py       a JWKS as verification keys (pure)
    jwt_checks.py the token's shape, a JWT's header, signature and times (pure)
    claims.py     userinfo and introspection
    identity.py   Identity, assembled from the token's and the issuer's claims
    cache.py      validated identities by token hash
    validator.py  TokenValidator, which puts these together
    errors.py     TokenRejected and its reason codes
"""

from .errors import REASONS, TRANSIENT_REASONS, TokenRejected
from .identity import Identity
from .issuer import ASYMMETRIC_ALGORITHMS, CHECKIN_PRESETS, IssuerConfig
from .validator import TokenValidator

__all__ = ["ASYMMETRIC_ALGORITHMS", "CHECKIN_PRESETS", "REASONS", "TRANSIENT_REASONS", "Identity", "IssuerConfig",
           "TokenRejected", "TokenValidator"]
