"""interLink's wire structs, of both surfaces (VK -> API and API -> plugin), in one module as upstream does.

Go is the peer, so the rules are Go's (see gojson). Kubernetes objects (Pod, ConfigMap, Secret,
ContainerStatus) stay plain dicts: we do not model Kubernetes.

Entry points: `parse_create`, `parse_pods`, `parse_log_request`, `parse_statuses`, `parse_ping`,
`create_body` and `log_request` (what a client sends).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import AliasChoices, ConfigDict, Field, field_serializer, field_validator

from slurmlink.core.kube import is_dns_label
from slurmlink.wire.gojson import (
    GO_ZERO_TIME,
    OMITEMPTY,
    POINTER,
    K8sList,
    Obj,
    WireError,
    WireModel,
    decode,
    go_field,
    validate,
)

# --- VK -> interLink API ----------------------------------------------------------------------------


class PodCreateRequests(WireModel):
    """Body of `/create` from the virtual kubelet: one pod and every object its volumes reference."""

    pod: Obj = Field(default_factory=dict)
    configmaps: K8sList = Field(default_factory=list)
    secrets: K8sList = Field(default_factory=list)
    # newer upstream carries PVCs; slurmlink does not mount them
    persistentvolumes: K8sList = Field(default_factory=list)
    # one ConfigMap per projected volume: metadata.name = pod volume name, data = file -> content
    projectedvolumesmaps: K8sList = Field(default_factory=list)
    jobscript_url: str = go_field("jobscriptURL", "")


# --- interLink API -> plugin ------------------------------------------------------------------------


class RetrievedContainer(WireModel):
    """The objects one container's volume mounts reference (spelling differs from PodCreateRequests)."""

    name: str = ""
    config_maps: K8sList = go_field("configMaps", factory=list)
    projectedvolumemaps: K8sList = Field(default_factory=list)
    secrets: K8sList = Field(default_factory=list)
    empty_dirs: list[str] = go_field("emptyDirs", factory=list)  # deprecated, always null
    persistent_volume_claims: K8sList = go_field("persistentVolumeClaims", factory=list)


class RetrievedPodData(WireModel):
    """Body of the plugin `/create` (>= 0.5; earlier versions sent a list of one)."""

    pod: Obj = Field(default_factory=dict)
    container: list[RetrievedContainer] = Field(default_factory=list)  # init containers first
    # Go's omitempty does not elide a struct, but an absent key decodes to the same zero value.
    job_config: Annotated[Obj, OMITEMPTY] = go_field("jobConfig", factory=dict)
    job_script: Annotated[str, OMITEMPTY] = go_field("jobScript", "")


class CreateStruct(WireModel):
    """Reply of `/create` on both surfaces."""

    pod_uid: str = go_field("PodUID", "")
    pod_jid: str = go_field("PodJID", "")


class PodStatus(WireModel):
    """One element of the `/status` reply; container statuses are Kubernetes ContainerStatus dicts."""

    name: str = ""
    uid: str = go_field("UID", "")
    namespace: str = ""
    jid: str = go_field("JID", "")
    containers: K8sList = Field(default_factory=list)
    init_containers: K8sList = go_field("initContainers", factory=list)


class ContainerLogOpts(WireModel):
    """kubectl logs options; 0/False/None mean "not set", as in Go."""

    tail: int = go_field("Tail", 0)
    # Go sends `Bytes`; the Python plugin SDK spells it `LimitBytes`: accept both, send Go's.
    limit_bytes: int = Field(
        default=0, validation_alias=AliasChoices("Bytes", "LimitBytes"), serialization_alias="Bytes"
    )
    timestamps: bool = go_field("Timestamps", False)
    follow: bool = go_field("Follow", False)
    previous: bool = go_field("Previous", False)
    since_seconds: int = go_field("SinceSeconds", 0)
    since_time: datetime | None = go_field("SinceTime", None)

    @field_validator("since_time", mode="before")
    @classmethod
    def _blank_time(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("since_time")
    @classmethod
    def _zero_time(cls, value: datetime | None) -> datetime | None:
        if value is None or value.year <= 1:  # Go's zero time.Time means unset
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @field_serializer("since_time")
    def _go_time(self, value: datetime | None) -> str:
        if value is None:
            return GO_ZERO_TIME  # Go never omits a time.Time
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class LogStruct(WireModel):
    """Body of `/getLogs` on both surfaces."""

    namespace: str = go_field("Namespace", "")
    pod_uid: str = go_field("PodUID", "")
    pod_name: str = go_field("PodName", "")
    container_name: str = go_field("ContainerName", "")
    opts: ContainerLogOpts = go_field("Opts", factory=ContainerLogOpts)

    def check(self) -> Self:
        """The checks interLink applies before forwarding a log request; raise WireError."""
        if not self.namespace:
            raise WireError("Namespace: missing")
        if not is_dns_label(self.namespace):
            raise WireError(f"Namespace: {self.namespace!r} is not a DNS label")
        if not self.pod_uid:
            raise WireError("PodUID: missing")
        if not self.container_name:
            raise WireError("ContainerName: missing")
        o = self.opts
        for key, value in (("Tail", o.tail), ("Bytes", o.limit_bytes), ("SinceSeconds", o.since_seconds)):
            if value < 0:
                raise WireError(f"Opts.{key}: must not be negative, got {value}")
        if o.tail and o.limit_bytes:
            raise WireError("Opts.Bytes: Tail and Bytes are both set, choose one")
        if o.since_seconds and o.since_time:
            raise WireError("Opts.SinceTime: SinceSeconds and SinceTime are both set, choose one")
        return self


class Accelerator(WireModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)  # Python plugins send numbers; Go wants strings

    resource_type: str = go_field("resourceType", "")
    available: str = ""


class ResourcesResponse(WireModel):
    """Free capacity as Kubernetes quantity strings; an empty one is left out (keep the node's value)."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    cpu: Annotated[str, OMITEMPTY] = ""
    memory: Annotated[str, OMITEMPTY] = ""
    pods: Annotated[str, OMITEMPTY] = ""
    accelerators: list[Accelerator] = Field(default_factory=list)


class Taint(WireModel):
    key: str = ""
    value: str = ""
    effect: str = ""


class PingResponse(WireModel):
    """Reply of the ping (`/status` with `[]`), used by the VK to set node capacity and taints."""

    status: Annotated[str, OMITEMPTY] = ""
    resources: ResourcesResponse = Field(default_factory=ResourcesResponse)
    taints: Annotated[list[Taint] | None, POINTER] = None  # None: leave unchanged; []: clear


# --- normalised /create -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A `/create` body from either surface, reduced to what slurmlink needs."""

    pod: Obj
    configmaps: list[Obj]
    secrets: list[Obj]
    projected: list[Obj]  # ConfigMap-shaped: metadata.name = pod volume name, data = file -> content

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])


_VK_KEYS = frozenset({"configmaps", "secrets", "projectedvolumesmaps", "jobscripturl", "persistentvolumes"})
_PLUGIN_KEYS = frozenset({"container", "jobconfig", "jobscript"})


def parse_create(body: Any) -> CreateRequest:
    """Normalise a `/create` body: VK `PodCreateRequests`, plugin `RetrievedPodData` or `[RetrievedPodData]`.

    The two objects are told apart by their keys; a plugin body's objects are collected from its containers.
    """
    body = decode(body)
    prefix = ""
    if isinstance(body, list):  # interLink <= 0.4 posted a list of one RetrievedPodData
        if len(body) != 1:
            raise WireError(f"body: expected a list of one RetrievedPodData, got {len(body)} elements")
        body, prefix = body[0], "[0]."
    if not isinstance(body, dict):
        raise WireError(f"{prefix.rstrip('.') or 'body'}: expected a JSON object, got {type(body).__name__}")

    keys = {k.lower() for k in body if isinstance(k, str)}
    if keys & _PLUGIN_KEYS and keys & _VK_KEYS:
        raise WireError(f"{prefix}container: mixes RetrievedPodData and PodCreateRequests keys")

    if keys & _PLUGIN_KEYS:
        plugin = validate(RetrievedPodData, body, prefix)
        pod = plugin.pod
        configmaps: list[tuple[str, Obj]] = []
        secrets: list[tuple[str, Obj]] = []
        projected: list[tuple[str, Obj]] = []
        for i, c in enumerate(plugin.container):  # collect what interLink spread over the containers
            at = f"{prefix}container[{i}]"
            configmaps += [(f"{at}.configMaps[{j}]", o) for j, o in enumerate(c.config_maps)]
            secrets += [(f"{at}.secrets[{j}]", o) for j, o in enumerate(c.secrets)]
            projected += [(f"{at}.projectedvolumemaps[{j}]", o) for j, o in enumerate(c.projectedvolumemaps)]
    else:
        vk = validate(PodCreateRequests, body, prefix)
        pod = vk.pod
        configmaps = [(f"{prefix}configmaps[{j}]", o) for j, o in enumerate(vk.configmaps)]
        secrets = [(f"{prefix}secrets[{j}]", o) for j, o in enumerate(vk.secrets)]
        projected = [(f"{prefix}projectedvolumesmaps[{j}]", o) for j, o in enumerate(vk.projectedvolumesmaps)]

    _check_pod(pod, f"{prefix}pod", need_containers=True)
    return CreateRequest(
        pod=pod, configmaps=_unique(configmaps), secrets=_unique(secrets), projected=_unique(projected)
    )


def _unique(items: list[tuple[str, Obj]]) -> list[Obj]:
    """Objects by metadata.name, first one wins (interLink repeats an object for every container using it)."""
    seen: dict[str, Obj] = {}
    for path, obj in items:
        meta = obj.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name:
            raise WireError(f"{path}.metadata.name: missing")
        seen.setdefault(name, obj)
    return list(seen.values())


def _check_pod(pod: Any, where: str, need_containers: bool) -> None:
    """Only what every service relies on: identity, and for /create at least one container."""
    if not isinstance(pod, dict):
        raise WireError(f"{where}: expected a Pod object, got {type(pod).__name__}")
    if not pod:
        raise WireError(f"{where}: missing")
    meta = pod.get("metadata")
    if not isinstance(meta, dict):
        raise WireError(f"{where}.metadata: missing")
    for key in ("name", "namespace", "uid"):
        value = meta.get(key)
        if value is None or value == "":
            raise WireError(f"{where}.metadata.{key}: missing")
        if not isinstance(value, str):
            raise WireError(f"{where}.metadata.{key}: expected a string, got {type(value).__name__}")
    if need_containers:
        spec = pod.get("spec")
        containers = spec.get("containers") if isinstance(spec, dict) else None
        if not isinstance(containers, list) or not containers:
            raise WireError(f"{where}.spec.containers: missing")


# --- other bodies -----------------------------------------------------------------------------------


def parse_pods(body: Any) -> list[Obj]:
    """`/status` and `/delete` bodies: a list of pods, one pod, or `[]`/null (the ping) -> []."""
    body = decode(body)
    if body is None:
        return []
    if isinstance(body, dict):
        _check_pod(body, "pod", need_containers=False)
        return [body]
    if not isinstance(body, list):
        raise WireError(f"body: expected a list of pods, a pod or null, got {type(body).__name__}")
    for i, pod in enumerate(body):
        _check_pod(pod, f"[{i}]", need_containers=False)
    return body


def parse_log_request(body: Any) -> LogStruct:
    """`/getLogs` body, checked as interLink checks it (DNS-label namespace, one of Tail/Bytes, ...)."""
    return LogStruct.from_wire(body).check()


def parse_statuses(body: Any) -> list[PodStatus]:
    """A `/status` reply: a list of PodStatus (null = none)."""
    body = decode(body)
    if body is None:
        return []
    if not isinstance(body, list):
        raise WireError(f"body: expected a list of PodStatus, got {type(body).__name__}")
    return [validate(PodStatus, item, f"[{i}]") for i, item in enumerate(body)]


def parse_ping(body: Any) -> PingResponse | None:
    """A ping reply: a PingResponse, or None when the peer answered `[]` or free text (both valid pings).

    An object that is not a PingResponse raises WireError: the caller logs it and keeps the node as it is.
    """
    try:
        body = decode(body)
    except WireError:
        return None  # free text is a valid ping answer
    return PingResponse.from_wire(body) if isinstance(body, dict) else None
