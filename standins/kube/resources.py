"""The resource types the stand-in serves: one table that discovery, routing, storage and selectors share."""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_WRITE = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Field labels beyond metadata.name/metadata.namespace, as each type's GetAttrs registers them.
    field_labels: tuple[str, ...] = ()
    # Storage shared with another type (events.k8s.io/v1 events are core/v1 events in another shape).
    storage: str = ""
    # Pods, namespaces and a few more answer a DELETE with the object, the rest with a Status.
    returns_deleted_object: bool = False
    # Types whose main resource ignores status and whose status subresource ignores the rest.
    has_status: bool = False
    # The real registry refuses an update without metadata.resourceVersion for these (AllowUnconditionalUpdate).
    conditional_update_only: bool = False
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def store_key(self) -> str:
        return self.storage or f"{self.group}/{self.plural}"


POD_FIELDS = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
              "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName")
EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                "reason", "reportingComponent", "source", "type")
EVENTS_V1_FIELDS = ("regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                    "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath",
                    "reason", "reportingController", "type")

TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), ("create", "delete", "get", "list", "patch",
                 "update", "watch"), {"status": READ_WRITE}, ("status.phase",),
                 returns_deleted_object=True, has_status=True),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), subresources={"status": READ_WRITE},
                 field_labels=("spec.unschedulable",), has_status=True),
    ResourceType("", "v1", "pods", "Pod", True, ("po",),
                 subresources={"status": READ_WRITE, "log": ("get",), "binding": ("create",)},
                 field_labels=POD_FIELDS, returns_deleted_object=True, has_status=True,
                 conditional_update_only=True, categories=("all",)),
    ResourceType("", "v1", "bindings", "Binding", True, verbs=("create",)),
    ResourceType("", "v1", "services", "Service", True, ("svc",), subresources={"status": READ_WRITE},
                 has_status=True, categories=("all",)),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "secrets", "Secret", True, field_labels=("type",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), subresources={"token": ("create",)}),
    ResourceType("", "v1", "events", "Event", True, ("ev",), field_labels=EVENT_FIELDS, storage="events"),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, ("ev",), field_labels=EVENTS_V1_FIELDS,
                 storage="events"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", False,
                 ("csr",), subresources={"status": READ_WRITE, "approval": READ_WRITE},
                 field_labels=("spec.signerName",), has_status=True),
    # Reviews are asked, not stored: create only, answered at once (reviews.py).
    ResourceType("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",)),
    ResourceType("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False,
                 verbs=("create",)),
)

GROUPS: dict[str, list[ResourceType]] = {}
for _type in TYPES:
    GROUPS.setdefault(_type.group, []).append(_type)


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    for candidate in GROUPS.get(group, ()):
        if candidate.version == version and candidate.plural == plural:
            return candidate
    return None


def by_kind(kind: str, group: str = "") -> ResourceType:
    return next(t for t in TYPES if t.kind == kind and t.group == group)
