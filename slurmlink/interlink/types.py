"""Wire types of both interLink surfaces (VK -> API and API -> plugin), in one module as upstream does.

Go is the peer, so the rules are Go's `encoding/json` rules:
- input: keys of *our* structs match case-insensitively (`uid`, `UID`, `Uid`), unknown keys are ignored,
  `null` is "no value" (an empty list for a slice, "" for a string, unset for a time);
- output: exact Go key casing, `null` for an empty slice, `omitempty` keys left out when empty.
Kubernetes objects (Pod, ConfigMap, Secret, ContainerStatus) stay plain dicts: we do not model Kubernetes.

Entry points: `parse_create`, `parse_pods`, `parse_log_request`, `parse_statuses`, `parse_ping`,
`Model.from_wire(body)`, `model.to_wire()` / `dump_wire(obj)`. Every malformed body raises `WireError`
whose message starts with the path of the bad field, e.g. `pod.metadata.uid: missing`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from slurmlink.core.errors import SlurmlinkError

Obj = dict[str, Any]

GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # RFC 1123 label, used with fullmatch


class WireError(SlurmlinkError, ValueError):
    """A request body that does not fit the wire format; the message names the bad field first."""


class _OmitEmpty:
    """Marker for Go `omitempty`: the key is left out when the value is empty or zero."""


class _Pointer:
    """Marker for a Go pointer to a slice: None is left out, while [] is sent as [] (it means "clear")."""


OMITEMPTY = _OmitEmpty()
POINTER = _Pointer()


def _accepted_keys(name: str, field: FieldInfo) -> list[str]:
    va = field.validation_alias
    if isinstance(va, AliasChoices):
        return [c for c in va.choices if isinstance(c, str)]
    if isinstance(va, str):
        return [va]
    return [field.alias or name]


class WireModel(BaseModel):
    """Base of every wire struct: Go-tolerant parsing in, Go-exact JSON out."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _go_decode(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        folded = {key.lower(): key for name, f in cls.model_fields.items() for key in _accepted_keys(name, f)}
        out: Obj = {}
        for key, value in data.items():
            if value is None:  # Go leaves the zero value for null: a default does the same here
                continue
            canonical = folded.get(key.lower(), key) if isinstance(key, str) else key
            out[canonical] = value  # as in Go, the last of two spellings wins
        return out

    @model_serializer(mode="wrap")
    def _go_encode(self, handler: SerializerFunctionWrapHandler) -> Obj:
        data: Obj = handler(self)
        for name, field in type(self).model_fields.items():
            alias = field.serialization_alias or field.alias or name
            key = alias if alias in data else name
            if key not in data:
                continue
            value = data[key]
            if OMITEMPTY in field.metadata:
                if value is None or value in ("", 0, [], {}):
                    del data[key]
            elif POINTER in field.metadata:
                if value is None:
                    del data[key]
            elif value == []:
                data[key] = None  # Go marshals a nil slice as null
        return data

    @classmethod
    def from_wire(cls, body: Any) -> Self:
        """Parse a decoded JSON value (or raw JSON text/bytes); raise WireError naming the bad field."""
        return _validate(cls, _decode(body))

    def to_wire(self) -> Obj:
        """The JSON object exactly as the Go peer would marshal it."""
        return self.model_dump(mode="json", by_alias=True)


def _decode(body: Any) -> Any:
    if isinstance(body, bytes | bytearray | str):
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise WireError(f"body: not valid JSON ({exc})") from None
    return body


def _path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    out = prefix.rstrip(".")
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


M = TypeVar("M", bound=WireModel)


def _validate(cls: type[M], data: Any, prefix: str = "") -> M:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{_path(err['loc'], prefix)}: {'missing' if err['type'] == 'missing' else err['msg']}"
            for err in exc.errors()
        ]
        raise WireError("; ".join(problems)) from None


def dump_wire(obj: WireModel | list[WireModel] | None) -> Any:
    """Go JSON of a model or of a list of models (a nil slice, e.g. no statuses, is null)."""
    if obj is None:
        return None
    if isinstance(obj, list):
        return [m.to_wire() for m in obj] or None
    return obj.to_wire()


K8sList = list[Obj]


def _go(key: str, default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
    """A field whose Go JSON key is `key`; Python code (and mypy) use the attribute name."""
    if factory is not None:
        return Field(default_factory=factory, validation_alias=key, serialization_alias=key)
    return Field(default, validation_alias=key, serialization_alias=key)


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
    jobscript_url: str = _go("jobscriptURL", "")


# --- interLink API -> plugin ------------------------------------------------------------------------


class RetrievedContainer(WireModel):
    """The objects one container's volume mounts reference (spelling differs from PodCreateRequests)."""

    name: str = ""
    config_maps: K8sList = _go("configMaps", factory=list)
    projectedvolumemaps: K8sList = Field(default_factory=list)
    secrets: K8sList = Field(default_factory=list)
    empty_dirs: list[str] = _go("emptyDirs", factory=list)  # deprecated, always null
    persistent_volume_claims: K8sList = _go("persistentVolumeClaims", factory=list)


class RetrievedPodData(WireModel):
    """Body of the plugin `/create` (>= 0.5; earlier versions sent a list of one)."""

    pod: Obj = Field(default_factory=dict)
    container: list[RetrievedContainer] = Field(default_factory=list)  # init containers first
    # Go's omitempty does not elide a struct, but an absent key decodes to the same zero value.
    job_config: Annotated[Obj, OMITEMPTY] = _go("jobConfig", factory=dict)
    job_script: Annotated[str, OMITEMPTY] = _go("jobScript", "")


class CreateStruct(WireModel):
    """Reply of `/create` on both surfaces."""

    pod_uid: str = _go("PodUID", "")
    pod_jid: str = _go("PodJID", "")


class PodStatus(WireModel):
    """One element of the `/status` reply; container statuses are Kubernetes ContainerStatus dicts."""

    name: str = ""
    uid: str = _go("UID", "")
    namespace: str = ""
    jid: str = _go("JID", "")
    containers: K8sList = Field(default_factory=list)
    init_containers: K8sList = _go("initContainers", factory=list)


class ContainerLogOpts(WireModel):
    """kubectl logs options; 0/False/None mean "not set", as in Go."""

    tail: int = _go("Tail", 0)
    # Go sends `Bytes`; the Python plugin SDK spells it `LimitBytes`: accept both, send Go's.
    limit_bytes: int = Field(
        default=0, validation_alias=AliasChoices("Bytes", "LimitBytes"), serialization_alias="Bytes"
    )
    timestamps: bool = _go("Timestamps", False)
    follow: bool = _go("Follow", False)
    previous: bool = _go("Previous", False)
    since_seconds: int = _go("SinceSeconds", 0)
    since_time: datetime | None = _go("SinceTime", None)

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

    namespace: str = _go("Namespace", "")
    pod_uid: str = _go("PodUID", "")
    pod_name: str = _go("PodName", "")
    container_name: str = _go("ContainerName", "")
    opts: ContainerLogOpts = _go("Opts", factory=ContainerLogOpts)

    def check(self) -> Self:
        """The checks interLink applies before forwarding a log request; raise WireError."""
        if not self.namespace:
            raise WireError("Namespace: missing")
        if not (_DNS_LABEL.fullmatch(self.namespace) and len(self.namespace) <= 63):
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

    resource_type: str = _go("resourceType", "")
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
    body = _decode(body)
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
        plugin = _validate(RetrievedPodData, body, prefix)
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
        vk = _validate(PodCreateRequests, body, prefix)
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
    body = _decode(body)
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
    body = _decode(body)
    if body is None:
        return []
    if not isinstance(body, list):
        raise WireError(f"body: expected a list of PodStatus, got {type(body).__name__}")
    return [_validate(PodStatus, item, f"[{i}]") for i, item in enumerate(body)]


def parse_ping(body: Any) -> PingResponse | None:
    """A ping reply: a PingResponse, or None when the peer answered `[]` or free text (both valid pings).

    An object that is not a PingResponse raises WireError: the caller logs it and keeps the node as it is.
    """
    try:
        body = _decode(body)
    except WireError:
        return None  # free text is a valid ping answer
    return PingResponse.from_wire(body) if isinstance(body, dict) else None
