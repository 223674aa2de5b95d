"""ServiceAccount tokens: TokenRequest (`serviceaccounts/{name}/token`) issues them, bearer auth accepts them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import bad_request, conflict, invalid, not_found
from .store import Store
from .timefmt import format_time, now

ISSUER = "https://kubernetes.default.svc.cluster.local"
# --api-audiences (by default the issuer): a token for any other audience is for another service to verify, and the
# apiserver answers it 401 (kubernetes.md, "Seen on a real kube-apiserver").
API_AUDIENCES = (ISSUER,)
MIN_EXPIRY = 600  # the real one refuses expirationSeconds under 10 minutes
MAX_EXPIRY = 48 * 3600  # and caps it at --service-account-max-token-expiration (here 48 h)


class TokenIssuer:
    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token_request(self, store: Store, namespace: str, account: str, body: dict[str, Any]) -> dict[str, Any]:
        sa = store.get("/serviceaccounts", namespace, account)
        if sa is None:
            raise not_found("", "serviceaccounts", account)
        spec = dict(body.get("spec") or {})
        expiry = spec.get("expirationSeconds") or 3600
        if not isinstance(expiry, int):
            raise bad_request("spec.expirationSeconds must be an integer")
        if expiry < MIN_EXPIRY:
            raise invalid("TokenRequest", "authentication.k8s.io", account, [
                ("spec.expirationSeconds", f"Invalid value: {expiry}: may not specify a duration less than 10 "
                                           "minutes")])
        expiry = min(expiry, MAX_EXPIRY)
        audiences = spec.get("audiences") or [ISSUER]
        claims: dict[str, Any] = {"namespace": namespace, "serviceaccount": {
            "name": account, "uid": sa["metadata"]["uid"]}}
        bound = spec.get("boundObjectRef")
        if bound:
            claims[bound.get("kind", "").lower() or "pod"] = self._bound(store, namespace, bound)
        issued_at = now()
        expires = issued_at + dt.timedelta(seconds=expiry)
        token = jwt.encode({
            "iss": ISSUER, "aud": audiences, "sub": f"system:serviceaccount:{namespace}:{account}",
            "iat": int(issued_at.timestamp()), "nbf": int(issued_at.timestamp()), "exp": int(expires.timestamp()),
            "jti": str(uuid.uuid4()), "kubernetes.io": claims}, self._key, algorithm="RS256")
        spec.update(expirationSeconds=expiry, audiences=audiences, boundObjectRef=bound)
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": account, "namespace": namespace,
                             "creationTimestamp": format_time(issued_at)},
                "spec": spec, "status": {"token": token, "expirationTimestamp": format_time(expires)}}

    @staticmethod
    def _bound(store: Store, namespace: str, bound: dict[str, Any]) -> dict[str, str]:
        if bound.get("kind") not in ("Pod", "Secret", "Node"):
            raise bad_request(f"cannot bind token to object of kind {bound.get('kind')!r}")
        plural = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}[bound["kind"]]
        target = store.get(f"/{plural}", "" if plural == "nodes" else namespace, bound.get("name", ""))
        if target is None:
            raise not_found("", plural, bound.get("name", ""))
        if bound.get("uid") and bound["uid"] != target["metadata"]["uid"]:
            # The real message says the object might have been deleted and then recreated.
            raise conflict("", plural, bound["name"], f"the UID in the bound object reference ({bound['uid']}) does "
                           f"not match the UID in record. The object might have been deleted and then recreated")
        return {"name": bound["name"], "uid": target["metadata"]["uid"]}

    def verify(self, store: Store, token: str, audiences: tuple[str, ...] = API_AUDIENCES
               ) -> tuple[str, tuple[str, ...]] | None:
        """(user, groups) for a valid token, for one of `audiences`, whose account (and bound pod) still exist."""
        try:
            claims = jwt.decode(token, self._key.public_key(), algorithms=["RS256"], issuer=ISSUER,
                                audience=list(audiences))
        except jwt.PyJWTError:
            return None
        info = claims.get("kubernetes.io") or {}
        namespace, account = info.get("namespace", ""), (info.get("serviceaccount") or {}).get("name", "")
        sa = store.get("/serviceaccounts", namespace, account)
        if sa is None or sa["metadata"]["uid"] != info["serviceaccount"].get("uid"):
            return None
        pod = info.get("pod")
        if pod:
            current = store.get("/pods", namespace, pod["name"])
            if current is None or current["metadata"]["uid"] != pod["uid"]:
                return None  # a bound token dies with its pod
        return claims["sub"], ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")

