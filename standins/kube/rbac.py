"""A minimal RBAC: a table of grants (subject → verbs on resources) that answers SubjectAccessReviews.

Matching as RBAC's: a rule's resource is `plural` or `plural/subresource`, `*` matches every resource and
subresource, `*/sub` a subresource of any resource; verb `*` matches every verb; a rule names an API group or
`*`, and optionally the object names it is limited to. Subjects are users or groups. There are no roles or
bindings as objects: a grant is a ClusterRole bound by a ClusterRoleBinding in one line. The stand-in consults
it only for SubjectAccessReviews and for who may create reviews; every other request is still allowed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# The ClusterRoles a real cluster has that the tests rely on (rules as in kube-apiserver's bootstrap policy).
KUBELET_API_ADMIN = (
    (("get", "list", "watch", "proxy"), ("nodes",)),
    (("*",), ("nodes/proxy", "nodes/log", "nodes/stats", "nodes/metrics", "nodes/spec", "nodes/configz",
              "nodes/healthz", "nodes/pods")),
)
REVIEWS = (("authentication.k8s.io", "tokenreviews"), ("authorization.k8s.io", "subjectaccessreviews"))


@dataclass(frozen=True)
class Grant:
    subject: str  # "user:<name>" or "group:<name>"
    verbs: tuple[str, ...]
    resources: tuple[str, ...]
    api_group: str = ""
    names: tuple[str, ...] = ()  # empty: any name
    why: str = ""  # the binding's name, given as the reason of an allowed review


def _resource_matches(rule: str, resource: str, subresource: str) -> bool:
    wanted = f"{resource}/{subresource}" if subresource else resource
    return rule in ("*", wanted) or (bool(subresource) and rule == f"*/{subresource}")


class Grants:
    def __init__(self) -> None:
        self._grants: list[Grant] = []
        self._lock = threading.Lock()  # tests add grants from their thread while the server answers in its own

    def grant(self, subject: str, verbs: tuple[str, ...], resources: tuple[str, ...], api_group: str = "",
              names: tuple[str, ...] = (), why: str = "") -> None:
        assert subject.startswith(("user:", "group:")), subject
        with self._lock:
            self._grants.append(Grant(subject, verbs, resources, api_group, names, why or f"grant to {subject}"))

    def allowed_by(self, user: str, groups: tuple[str, ...], verb: str, api_group: str, resource: str,
                   subresource: str = "", name: str = "") -> str | None:
        """The reason the request is allowed, or None when no grant allows it."""
        subjects = {f"user:{user}", *(f"group:{group}" for group in groups)}
        with self._lock:
            grants = list(self._grants)
        for grant in grants:
            if (grant.subject in subjects and (verb in grant.verbs or "*" in grant.verbs)
                    and grant.api_group in (api_group, "*")
                    and any(_resource_matches(rule, resource, subresource) for rule in grant.resources)
                    and (not grant.names or name in grant.names)):
                return grant.why
        return None


def cluster_defaults(grants: Grants) -> Grants:
    """The grants of a kubeadm cluster that the tests meet: admins, the apiserver's kubelet client, nodes."""
    for group in ("system:masters", "kubeadm:cluster-admins"):  # both bound to cluster-admin
        grants.grant(f"group:{group}", ("*",), ("*",), "*", why=f'RBAC: allowed by ClusterRoleBinding of group '
                     f'"{group}" to ClusterRole "cluster-admin"')
    why = ('RBAC: allowed by ClusterRoleBinding "kubeadm:apiserver-kubelet-client" of ClusterRole '
           '"system:kubelet-api-admin" to User "kube-apiserver-kubelet-client"')
    for verbs, resources in KUBELET_API_ADMIN:
        grants.grant("user:kube-apiserver-kubelet-client", verbs, resources, why=why)
    # A node may review tokens and access (the Node authorizer grants it, with the rules of ClusterRole
    # system:node); so may anyone bound to system:auth-delegator, as a ServiceAccount-run vk must be.
    for api_group, plural in REVIEWS:
        grants.grant("group:system:nodes", ("create",), (plural,), api_group, why="Node authorizer")
    return grants
