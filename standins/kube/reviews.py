"""TokenReview (authentication.k8s.io/v1) and SubjectAccessReview (authorization.k8s.io/v1), as a kubelet's
webhook authenticator and authoriser send them.

As the real ones: both are create-only and answered 201 with the review and its status, never stored.
TokenReview: the token is authenticated like a bearer token on any request; `spec.audiences` (default: the
apiserver's own) must share one with the token's, and `status.audiences` says which; a refused token is
`authenticated` false with an `error`. SubjectAccessReview: needs `resourceAttributes` or
`nonResourceAttributes` and a user or groups; `status.allowed` and `reason` come from the grant table
(rbac.py). The caller must itself be allowed to create reviews (the real `system:auth-delegator` rules).
SelfSubjectReview (authentication.k8s.io/v1, `kubectl auth whoami`): any authenticated caller may create one
(the real ClusterRole `system:basic-user`), and is told its own user name and groups in `status.userInfo`.
"""

from __future__ import annotations

from typing import Any

import jwt

from .auth import AUTHENTICATED, Authenticator
from .errors import StatusError, invalid
from .rbac import Grants
from .registry import Caller
from .tokens import API_AUDIENCES

_UNAUTHENTICATED = "[invalid bearer token, token lookup failed]"


def may_create(grants: Grants, caller: Caller, api_group: str, plural: str) -> None:
    if grants.allowed_by(caller.user, caller.groups, "create", api_group, plural) is None:
        raise StatusError(403, "Forbidden", f'{plural}.{api_group} is forbidden: User "{caller.user}" cannot create '
                          f'resource "{plural}" in API group "{api_group}" at the cluster scope',
                          {"group": api_group, "kind": plural})


def _token_audiences(token: str) -> tuple[str, ...]:
    # Only read after the token was verified; static tokens carry no audience and serve the apiserver's.
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return API_AUDIENCES
    aud = claims.get("aud") or []
    return (aud,) if isinstance(aud, str) else tuple(aud)


def _token_caller(authenticator: Authenticator, token: str) -> Caller | None:
    # The token's own validity only: its audiences are checked against the review's, not the apiserver's.
    if token in authenticator.tokens:
        return authenticator.tokens[token]
    verified = authenticator.issuer.verify(authenticator.store, token, audiences=_token_audiences(token))
    return Caller(*verified) if verified is not None else None


def token_review(authenticator: Authenticator, body: Any) -> dict[str, Any]:
    spec = dict((body or {}).get("spec") or {})
    token = spec.get("token") or ""
    if not isinstance(token, str) or not token:
        raise invalid("TokenReview", "authentication.k8s.io", "", [("spec.token", "Required value")])
    wanted = tuple(spec.get("audiences") or API_AUDIENCES)
    review: dict[str, Any] = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                              "metadata": {"creationTimestamp": None}, "spec": spec}
    caller = _token_caller(authenticator, token)
    shared = [audience for audience in wanted if audience in _token_audiences(token)] if caller else []
    if caller is None or not shared:
        review["status"] = {"user": {}, "error": _UNAUTHENTICATED if caller is None else
                            "[invalid bearer token, token audiences not valid]"}
        return review
    review["status"] = {"authenticated": True, "user": {"username": caller.user, "groups": list(caller.groups)},
                        "audiences": shared}
    return review


def self_subject_review(caller: Caller) -> dict[str, Any]:
    # The real apiserver adds system:authenticated to every authenticated user's groups.
    groups = list(caller.groups) + ([] if AUTHENTICATED in caller.groups else [AUTHENTICATED])
    return {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "status": {"userInfo": {"username": caller.user, "groups": groups}}}


def subject_access_review(grants: Grants, body: Any) -> dict[str, Any]:
    spec = dict((body or {}).get("spec") or {})
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    problems = []
    if bool(resource) == bool(non_resource):
        problems.append(("spec.resourceAttributes", "Invalid value: \"null\": exactly one of nonResourceAttributes "
                                                    "or resourceAttributes must be specified"))
    if not spec.get("user") and not spec.get("groups"):
        problems.append(("spec.user", "Invalid value: \"\": at least one of user or group must be specified"))
    if problems:
        raise invalid("SubjectAccessReview", "authorization.k8s.io", "", problems)
    reason = None
    if resource:
        reason = grants.allowed_by(spec.get("user") or "", tuple(spec.get("groups") or ()),
                                   resource.get("verb") or "", resource.get("group") or "",
                                   resource.get("resource") or "", resource.get("subresource") or "",
                                   resource.get("name") or "")
    status = {"allowed": True, "reason": reason} if reason is not None else {"allowed": False}
    return {"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
