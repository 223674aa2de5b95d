"""TokenReview and SubjectAccessReview, as a kubelet's webhook authenticator and authoriser send them (the vk's
kubelet endpoint does): answered 201 with a status, never stored."""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.contract.cluster import Cluster

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - a path
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def _post(cluster: Cluster, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with cluster.raw() as http:
        answer = http.post(path, json=body)
    return answer.status_code, answer.json()


def _token_review(cluster: Cluster, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    code, review = _post(cluster, TOKEN_REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                                  "spec": spec})
    assert code == 201, review
    assert review["kind"] == "TokenReview"
    return dict(review["status"])


def _service_account_token(cluster: Cluster, ns: str, audiences: list[str] | None = None) -> str:
    spec: dict[str, Any] = {"expirationSeconds": 600}
    if audiences:
        spec["audiences"] = audiences
    with cluster.raw() as http:
        answer = http.post(f"/api/v1/namespaces/{ns}/serviceaccounts/default/token",
                           json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["status"]["token"])


def test_token_review_of_a_service_account_token(cluster: Cluster, ns: str) -> None:
    token = _service_account_token(cluster, ns)
    status = _token_review(cluster, token)
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{ns}:default"
    assert {"system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"} <= set(
        status["user"]["groups"])
    assert status["audiences"]  # the apiserver's own, as none were asked for


def test_token_review_refuses_bad_tokens_and_foreign_audiences(cluster: Cluster, ns: str) -> None:
    refused = _token_review(cluster, "not-a-token")
    assert not refused.get("authenticated") and refused.get("error")
    token = _service_account_token(cluster, ns, ["https://elsewhere.example"])
    other = _token_review(cluster, token)  # the apiserver's audiences are not the token's
    assert not other.get("authenticated")
    wanted = _token_review(cluster, token, ["https://elsewhere.example"])
    assert wanted["authenticated"] is True and wanted["audiences"] == ["https://elsewhere.example"]


def _access_review(cluster: Cluster, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return _post(cluster, ACCESS_REVIEWS, {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                                           "spec": spec})


def test_subject_access_review_on_a_nodes_subresource(cluster: Cluster) -> None:
    proxy = {"verb": "get", "group": "", "version": "v1", "resource": "nodes", "subresource": "proxy",
             "name": "some-node"}
    code, review = _access_review(cluster, {"user": f"nobody-{secrets.token_hex(4)}",
                                            "groups": ["system:authenticated"], "resourceAttributes": proxy})
    assert code == 201 and review["status"]["allowed"] is False
    assert review["spec"]["resourceAttributes"]["subresource"] == "proxy"
    code, review = _access_review(cluster, {"user": "an-admin", "groups": ["system:masters"],
                                            "resourceAttributes": proxy})
    assert code == 201 and review["status"]["allowed"] is True


def test_subject_access_review_needs_a_subject(cluster: Cluster) -> None:
    code, review = _access_review(cluster, {"resourceAttributes": {"verb": "get", "resource": "nodes"}})
    assert code == 422 and review["reason"] == "Invalid"


SELF_REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


def test_kubectl_auth_whoami_is_a_self_subject_review(cluster: Cluster) -> None:
    answer = cluster.kubectl("auth", "whoami", "-o", "json")
    review = json.loads(answer.stdout)
    assert review["kind"] == "SelfSubjectReview" and review["apiVersion"] == "authentication.k8s.io/v1"
    assert review["status"]["userInfo"]["username"]
    assert "system:authenticated" in review["status"]["userInfo"]["groups"]


def test_self_subject_review_tells_a_service_account_who_it_is(cluster: Cluster, ns: str) -> None:
    token = _service_account_token(cluster, ns)
    with cluster.raw(token=token) as http:
        answer = http.post(SELF_REVIEWS, json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert answer.status_code == 201, answer.text
    user = answer.json()["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{ns}:default"
    assert {"system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"} <= set(user["groups"])
    with cluster.raw(token="not-a-token") as http:  # noqa: S106 - a refused token
        refused = http.post(SELF_REVIEWS, json={"apiVersion": "authentication.k8s.io/v1",
                                                "kind": "SelfSubjectReview"})
    assert refused.status_code == 401
