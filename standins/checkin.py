"""A stand-in for EGI Check-in, served for real over HTTP on loopback (uvicorn in a background thread).

It stands in for the Keycloak realm `egi` behind `https://aai.egi.eu/auth/realms/egi` and behaves like it on:
- the issuer is `<base url>/auth/realms/egi`; discovery at `<issuer>/.well-known/openid-configuration`; the
  endpoints under `<issuer>/protocol/openid-connect/`: `certs` (JWKS), `userinfo`, `token`, `token/introspect`;
- the JWKS holds the signing keys plus an RSA-OAEP encryption key (`use: enc`), as Keycloak's does;
- access tokens are JWTs signed RS256 (ES256 keys available too) with a `kid`, carrying `iss`, `sub`
  (`<hex>@egi.eu`), `voperson_id`, `exp` (1 h), `iat`, `jti`, `typ` Bearer, `scope`, `client_id`/`azp`; `aud`
  only when asked (Check-in documents none for user ATs);
- `eduperson_entitlement` (AARC-G002, `...#aai.egi.eu`) and `eduperson_assurance` are released at userinfo
  and introspection, not in the access token;
- userinfo takes `Authorization: Bearer`; answers 401 `invalid_token` for unknown, expired or revoked tokens;
- introspection is for confidential clients only (client_secret_basic, RFC 6749 form-encoded, or
  client_secret_post); inactive tokens give `{"active": false}`;
- the token endpoint's refresh grant issues a new access token and rotates the refresh token (the old one
  stops working, as with Keycloak's "revoke refresh token"); revoked refresh tokens give `invalid_grant`.
It differs in everything else: no login, no consent, no sessions, no signed userinfo, opaque tokens exist
only because tests ask for them (Check-in issues JWTs), and it keeps time with the real clock.

Failure injection per endpoint (`discovery`, `certs`, `userinfo`, `introspect`, `token`): a delay, an HTTP
status (e.g. 503), garbage instead of JSON, or (certs) other keys under the same kids; `stop()` makes the port
refuse connections. `requests` records every request by endpoint name, so tests can assert "no call".

Use: `with CheckinStandin() as idp: ...`, or in the unit tests the `checkin` fixture (tests/unit/conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

REALM_PATH = "/auth/realms/egi"
OIDC = "/protocol/openid-connect"
ENDPOINTS = ("discovery", "certs", "userinfo", "introspect", "token")
DEFAULT_CLIENT = ("slurmlink-test", "s3cret/with:odd&chars")  # odd chars check the form-encoding of Basic auth
DEFAULT_SCOPE = "openid profile email eduperson_entitlement voperson_id"


@dataclass
class Fault:
    delay: float = 0.0  # seconds before answering (then the normal or faulty answer)
    status: int | None = None  # answer this HTTP status with an error body
    garbage: bool = False  # answer 200 with a body that is not JSON
    wrong_keys: bool = False  # certs only: publish other keys under the same kids


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any  # rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[self.alg].to_jwk(
            self.private.public_key()))
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def public_pem(self) -> bytes:
        return bytes(self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def new_key(alg: str = "RS256", kid: str | None = None) -> SigningKey:
    """A fresh key pair (also usable as an attacker's key)."""
    if alg.startswith(("RS", "PS")):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    else:
        raise ValueError(f"the stand-in makes no {alg} keys")
    return SigningKey(kid or f"{alg.lower()}-{secrets.token_hex(4)}", alg, private)


def b64url(data: bytes | str | Mapping[str, Any]) -> str:
    if isinstance(data, Mapping):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _free_port() -> int:
    """A free loopback port (the stand-ins import nothing of tests/ or bench/, so they keep their own)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CheckinStandin:
    """The fake Check-in. Thread-safe: tests change it while the server thread answers."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.issuer = self.base_url + REALM_PATH
        self.discovery_url = self.issuer + "/.well-known/openid-configuration"
        self.jwks_uri = self.issuer + OIDC + "/certs"
        self.userinfo_endpoint = self.issuer + OIDC + "/userinfo"
        self.token_endpoint = self.issuer + OIDC + "/token"
        self.introspection_endpoint = self.issuer + OIDC + "/token/introspect"
        self._lock = threading.RLock()
        self._initial = [new_key("RS256"), new_key("ES256")]
        # Keycloak also publishes an encryption key (use=enc, RSA-OAEP) in the same JWKS: it must never verify.
        self.encryption_key = new_key("RS256", f"enc-{secrets.token_hex(4)}")
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # --- lifecycle -----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the initial keys, users, clients; no faults, no tokens, empty request log."""
        with self._lock:
            self.keys: dict[str, SigningKey] = {k.kid: k for k in self._initial}
            self.signing_kid = self._initial[0].kid
            self.users: dict[str, dict[str, Any]] = {}
            self.clients: dict[str, str | None] = {DEFAULT_CLIENT[0]: DEFAULT_CLIENT[1]}
            self.faults: dict[str, Fault] = {}
            self.revoked: set[str] = set()  # sha256 of revoked access tokens
            self.opaque: dict[str, dict[str, Any]] = {}  # opaque token -> {sub, exp, iat, client_id, scope}
            self.refresh_tokens: dict[str, dict[str, Any]] = {}  # refresh token -> {sub, client_id, scope}
            self.requests: list[str] = []

    def start(self) -> CheckinStandin:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; without it every kept-alive
        # request waits ~40 ms for a delayed ACK (Nagle)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(self._app(), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name=f"checkin-standin-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Check-in stand-in did not start")
            time.sleep(0.005)
        self._socket = sock
        return self

    def serve_forever(self) -> None:
        """Start and block (e.g. in a forked process, so that the caller keeps the keys to mint with)."""
        self.start()
        assert self._thread is not None
        self._thread.join()

    def stop(self) -> None:
        """Stop serving: the port then refuses connections (an IdP that is down)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
            self._socket.close()
        self._server = self._thread = None

    def __enter__(self) -> CheckinStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- keys ------------------------------------------------------------------------------------------------

    @property
    def rsa_kid(self) -> str:
        return self._initial[0].kid

    @property
    def ec_kid(self) -> str:
        return self._initial[1].kid

    def add_key(self, alg: str = "RS256", kid: str | None = None, *, signing: bool = True) -> str:
        """Publish a new key (key rotation); by default it signs from now on. Returns its kid."""
        key = new_key(alg, kid)
        with self._lock:
            self.keys[key.kid] = key
            if signing:
                self.signing_kid = key.kid
        return key.kid

    def remove_key(self, kid: str) -> None:
        with self._lock:
            del self.keys[kid]

    def key(self, kid: str | None = None) -> SigningKey:
        with self._lock:
            return self.keys[kid or self.signing_kid]

    def sign(self, payload: Mapping[str, Any], *, kid: str | None = None, key: SigningKey | None = None,
             headers: Mapping[str, Any] | None = None) -> str:
        """Sign anything with a published key (or `key`, e.g. an attacker's); `headers` override the header."""
        signer = key or self.key(kid)
        header = {"alg": signer.alg, "typ": "JWT", "kid": signer.kid, **(headers or {})}
        header = {k: v for k, v in header.items() if v is not None}  # None removes a header field
        signing_input = f"{b64url(header)}.{b64url(dict(payload))}"
        algorithm = jwt.algorithms.get_default_algorithms()[signer.alg]
        return f"{signing_input}.{b64url(algorithm.sign(signing_input.encode(), signer.private))}"

    # --- users and tokens ------------------------------------------------------------------------------------

    @staticmethod
    def new_subject() -> str:
        return secrets.token_hex(32) + "@egi.eu"  # Check-in's Community User Identifier shape

    def set_user(self, sub: str, /, **claims: Any) -> dict[str, Any]:
        """Set (merge) the claims userinfo/introspection release for `sub`; returns them."""
        with self._lock:
            user = self.users.setdefault(sub, self._default_user(sub))
            user.update(claims)
            return dict(user)

    def user_claims(self, sub: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.users.setdefault(sub, self._default_user(sub)))

    @staticmethod
    def _default_user(sub: str) -> dict[str, Any]:
        name = sub[:8]
        return {
            "sub": sub,
            "voperson_id": sub,
            "preferred_username": f"user{name}",
            "name": f"Test User {name}",
            "given_name": "Test",
            "family_name": f"User {name}",
            "email": f"{name}@example.org",
            "email_verified": True,
            "eduperson_entitlement": ["urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu"],
            "eduperson_assurance": ["https://refeds.org/assurance/IAP/low", "https://aai.egi.eu/LoA#Low"],
        }

    def access_claims(self, sub: str | None = None, *, lifetime: int = 3599, aud: str | list[str] | None = None,
                      client_id: str = DEFAULT_CLIENT[0], scope: str = DEFAULT_SCOPE, **claims: Any) -> dict[str, Any]:
        """The payload of a Check-in-shaped access token; `claims` override (None removes a claim)."""
        sub = sub or self.new_subject()
        self.user_claims(sub)  # the user exists for userinfo from now on
        now = int(time.time())
        payload: dict[str, Any] = {
            "exp": now + lifetime, "iat": now, "auth_time": now - 5, "jti": secrets.token_hex(16),
            "iss": self.issuer, "sub": sub, "typ": "Bearer", "azp": client_id, "client_id": client_id,
            "scope": scope, "sid": secrets.token_hex(16), "voperson_id": self.users[sub].get("voperson_id"),
        }
        if aud is not None:
            payload["aud"] = aud
        payload.update(claims)
        return {k: v for k, v in payload.items() if v is not None}

    def mint(self, sub: str | None = None, *, kid: str | None = None, lifetime: int = 3599,
             aud: str | list[str] | None = None, **claims: Any) -> str:
        """A Check-in-shaped JWT access token for `sub` (a new user if None); `claims` override, None removes."""
        return self.sign(self.access_claims(sub, lifetime=lifetime, aud=aud, **claims), kid=kid)

    def mint_opaque(self, sub: str | None = None, *, lifetime: int = 3599, client_id: str = DEFAULT_CLIENT[0],
                    scope: str = DEFAULT_SCOPE) -> str:
        sub = sub or self.new_subject()
        self.user_claims(sub)
        token = secrets.token_urlsafe(32)
        now = int(time.time())
        with self._lock:
            self.opaque[token] = {"sub": sub, "exp": now + lifetime, "iat": now, "client_id": client_id,
                                  "scope": scope}
        return token

    def issue_refresh_token(self, sub: str, client_id: str = DEFAULT_CLIENT[0], scope: str = DEFAULT_SCOPE) -> str:
        token = secrets.token_urlsafe(48)
        with self._lock:
            self.refresh_tokens[token] = {"sub": sub, "client_id": client_id, "scope": scope}
        return token

    def revoke(self, token: str) -> None:
        """Revoke an access token or a refresh token."""
        with self._lock:
            self.revoked.add(hashlib.sha256(token.encode()).hexdigest())
            self.refresh_tokens.pop(token, None)

    def add_client(self, client_id: str, secret: str | None = None) -> None:
        """Register a client; without a secret it is public (refresh only, no introspection)."""
        with self._lock:
            self.clients[client_id] = secret

    # --- faults and the request log --------------------------------------------------------------------------

    def set_fault(self, endpoint: str, *, delay: float = 0.0, status: int | None = None, garbage: bool = False,
                  wrong_keys: bool = False) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {ENDPOINTS}")
        with self._lock:
            self.faults[endpoint] = Fault(delay, status, garbage, wrong_keys)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def count(self, endpoint: str | None = None) -> int:
        with self._lock:
            return len(self.requests) if endpoint is None else Counter(self.requests)[endpoint]

    # --- token checks the endpoints share --------------------------------------------------------------------

    def token_info(self, token: str) -> dict[str, Any] | None:
        """What the IdP knows of a live access token (sub, exp, iat, client_id, scope, ...), or None."""
        with self._lock:
            if hashlib.sha256(token.encode()).hexdigest() in self.revoked:
                return None
            opaque = self.opaque.get(token)
            keys = {kid: k.private.public_key() for kid, k in self.keys.items()}
            algs = {kid: k.alg for kid, k in self.keys.items()}
        if opaque is not None:
            return dict(opaque) if opaque["exp"] > time.time() else None
        try:
            kid = str(jwt.get_unverified_header(token).get("kid"))
            claims: dict[str, Any] = jwt.decode(token, keys[kid], algorithms=[algs[kid]], issuer=self.issuer,
                                                options={"verify_aud": False, "require": ["exp", "sub"]})
        except (jwt.PyJWTError, KeyError, TypeError):
            return None
        if claims.get("typ", "Bearer") != "Bearer":
            return None  # Keycloak's userinfo refuses ID and refresh tokens
        return claims

    # --- the HTTP app ----------------------------------------------------------------------------------------

    async def _fault(self, endpoint: str) -> Response | None:
        with self._lock:
            self.requests.append(endpoint)
            fault = self.faults.get(endpoint)
        if fault is None:
            return None
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=fault.status)
        if fault.garbage:
            return Response(b"<html>{not json", media_type="application/json")
        return None

    def _client(self, request: Request, form: Mapping[str, str]) -> str | None:
        """The authenticated client id (client_secret_basic or client_secret_post), or None."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                raw = base64.b64decode(auth[6:], validate=True).decode()
                cid, _, secret = raw.partition(":")
                cid, secret = urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(secret)
            except ValueError:
                return None
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        with self._lock:
            known = cid in self.clients
            expected = self.clients.get(cid)
        if not known:
            return None
        if expected is None:  # public client: identifies itself, cannot authenticate
            return cid if not secret else None
        return cid if secrets.compare_digest(secret.encode(), expected.encode()) else None

    def _app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        oidc = REALM_PATH + OIDC

        @app.get(REALM_PATH + "/.well-known/openid-configuration")
        async def discovery() -> Response:
            if (faulty := await self._fault("discovery")) is not None:
                return faulty
            return JSONResponse({
                "issuer": self.issuer,
                "authorization_endpoint": self.issuer + OIDC + "/auth",
                "token_endpoint": self.token_endpoint,
                "introspection_endpoint": self.introspection_endpoint,
                "userinfo_endpoint": self.userinfo_endpoint,
                "end_session_endpoint": self.issuer + OIDC + "/logout",
                "jwks_uri": self.jwks_uri,
                "device_authorization_endpoint": self.issuer + OIDC + "/auth/device",
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
                                          "urn:ietf:params:oauth:grant-type:device_code",
                                          "urn:ietf:params:oauth:grant-type:token-exchange"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": DEFAULT_SCOPE.split() + ["aarc", "eduperson_assurance", "offline_access"],
            })

        @app.get(oidc + "/certs")
        async def certs() -> Response:
            if (faulty := await self._fault("certs")) is not None:
                return faulty
            with self._lock:
                keys = list(self.keys.values())
                wrong = self.faults.get("certs", Fault()).wrong_keys
            if wrong:
                keys = [new_key(k.alg, k.kid) for k in keys]
            enc = {**self.encryption_key.public_jwk(), "use": "enc", "alg": "RSA-OAEP"}
            return JSONResponse({"keys": [k.public_jwk() for k in keys] + [enc]})

        @app.get(oidc + "/userinfo")
        async def userinfo(request: Request) -> Response:
            if (faulty := await self._fault("userinfo")) is not None:
                return faulty
            auth = request.headers.get("authorization", "")
            info = self.token_info(auth[7:]) if auth.lower().startswith("bearer ") else None
            if info is None:
                return JSONResponse({"error": "invalid_token", "error_description": "Token verification failed"},
                                    status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return JSONResponse(self.user_claims(info["sub"]))

        @app.post(oidc + "/token/introspect")
        async def introspect(request: Request) -> Response:
            if (faulty := await self._fault("introspect")) is not None:
                return faulty
            form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
            client = self._client(request, form)
            with self._lock:
                confidential = client is not None and self.clients.get(client) is not None
            if not confidential:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            info = self.token_info(form.get("token", ""))
            if info is None:
                return JSONResponse({"active": False})
            user = self.user_claims(info["sub"])
            return JSONResponse({**user, **{k: info[k] for k in ("sub", "exp", "iat", "client_id", "scope")
                                            if k in info},
                                 "active": True, "iss": self.issuer, "token_type": "Bearer",
                                 "username": user.get("preferred_username")})

        @app.post(oidc + "/token")
        async def token(request: Request) -> Response:
            if (faulty := await self._fault("token")) is not None:
                return faulty
            form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
            client = self._client(request, form)
            if client is None:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if form.get("grant_type") != "refresh_token":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            with self._lock:
                grant = self.refresh_tokens.get(form.get("refresh_token", ""))
                if grant is None or grant["client_id"] != client:
                    return JSONResponse({"error": "invalid_grant", "error_description": "Invalid refresh token"},
                                        status_code=400)
                del self.refresh_tokens[form["refresh_token"]]  # rotation: the old refresh token is spent
            access = self.mint(grant["sub"], client_id=client, scope=grant["scope"])
            refresh = self.issue_refresh_token(grant["sub"], client, grant["scope"])
            return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 3599,
                                 "refresh_token": refresh, "refresh_expires_in": 31536000,
                                 "scope": grant["scope"]})

        return app
