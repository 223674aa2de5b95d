"""Everything a pod needs besides itself, fetched from Kubernetes for `/create`: the ConfigMaps and Secrets it
references, and its projected volumes resolved into files (ServiceAccount token, kube-root-ca.crt, downward API)."""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import Any

from lightkube import ApiError, AsyncClient

from slurmlink.core.errors import SlurmlinkError
from slurmlink.vk.kube import ConfigMap, Secret, request_token, status_code
from slurmlink.vk.references import references
from slurmlink.vk.tokentiming import expires_at

Obj = dict[str, Any]
_KINDS = {"ConfigMap": ConfigMap, "Secret": Secret}


class MissingReference(SlurmlinkError):
    """A required object does not exist (yet), or the node may not read it: the pod waits, then fails after a
    timeout. `forbidden`: the apiserver refused (403); right after a pod is bound that is the Node authorizer
    not knowing the binding yet, which the controller first retries quietly."""

    def __init__(self, kind: str, name: str, detail: str = "", *, what: str = "not found",
                 forbidden: bool = False) -> None:
        text = f'{kind.lower()} "{name}" {what}'
        super().__init__(f"{text}: {detail}" if detail else text)
        self.kind, self.name, self.forbidden = kind, name, forbidden


def _slim(obj: Obj) -> Obj:
    """The object without server bookkeeping (managedFields can be larger than the data)."""
    meta = obj.get("metadata") or {}
    out: Obj = {"apiVersion": "v1", "kind": obj.get("kind"),
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "labels", "annotations") if k in meta}}
    for key in ("data", "binaryData", "type", "immutable"):
        if key in obj:
            out[key] = obj[key]
    return out


def _text(value: bytes) -> str | None:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None  # a projected map carries text; binary keys need a plain secret volume


def _decoded(obj: Obj, kind: str) -> dict[str, str]:
    """An object's keys as text (Secret data is base64 on the wire)."""
    out: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        if kind == "Secret":
            try:
                text = _text(base64.b64decode(str(value), validate=True))
            except (binascii.Error, ValueError):
                text = None
        else:
            text = str(value)
        if text is not None:
            out[key] = text
    for key, value in (obj.get("binaryData") or {}).items():
        try:
            text = _text(base64.b64decode(str(value), validate=True))
        except (binascii.Error, ValueError):
            text = None
        if text is not None:
            out[key] = text
    return out


def _downward(pod: Obj, field_path: str) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName")}
    if field_path in simple:
        return str(simple[field_path] or "")
    if field_path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(field_path.split(".")[1]) or {}
        return "".join(f'{k}="{v}"\n' for k, v in sorted(items.items()))
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", field_path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    return ""  # status fields (podIP, hostIP) have no meaning before the job runs


class Resolver:
    def __init__(self, kube: AsyncClient, token_expiration_seconds: int) -> None:
        self.kube = kube
        self.token_expiration_seconds = token_expiration_seconds
        # pod uid -> (when its tokens were issued, the earliest expiry), for the refresher (vk.tokenrefresh)
        self.issued: dict[str, tuple[float, float]] = {}

    async def issue_token(self, pod: Obj, audience: str | None) -> tuple[str, float]:
        """A ServiceAccount token bound to the pod: (token, its expiry as wall-clock seconds)."""
        meta = pod["metadata"]
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        issued_at = time.time()
        try:
            answer = await request_token(self.kube, str(meta["namespace"]), str(account), str(meta["name"]),
                                         str(meta["uid"]), [audience] if audience else [],
                                         self.token_expiration_seconds)
        except ApiError as exc:
            if status_code(exc) == 403:  # the Node authorizer: no pod bound here uses this ServiceAccount (yet)
                raise MissingReference("ServiceAccount", str(account), str(exc), what="token may not be requested "
                                       "by this node", forbidden=True) from None
            raise
        return str((answer.get("status") or {}).get("token", "")), \
            expires_at(answer, issued_at, self.token_expiration_seconds)

    def _issued(self, uid: str, expires: float) -> None:
        issued_at, earliest = self.issued.get(uid, (time.time(), expires))
        self.issued[uid] = (issued_at, min(earliest, expires))  # the pod's tokens are refreshed together

    async def _get(self, kind: str, namespace: str, name: str, required: bool) -> Obj | None:
        try:
            obj = await self.kube.get(_KINDS[kind], name, namespace=namespace)
        except ApiError as exc:
            if status_code(exc) == 403:
                # The Node authorizer lets a node read only what pods bound to it reference in their spec.
                raise MissingReference(kind, name, "reference it in the pod's spec (e.g. as a volume) or give the "
                                       "node's identity read access to it", what="may not be read by this node",
                                       forbidden=True) from None
            if status_code(exc) != 404:
                raise
            if required:
                raise MissingReference(kind, name) from None
            return None
        return {**dict(obj), "kind": kind}

    async def create_body(self, pod: Obj) -> Obj:
        """The `/create` body (interLink's PodCreateRequests); MissingReference when a required object is absent."""
        namespace = str(pod["metadata"]["namespace"])
        self.issued.pop(str(pod["metadata"]["uid"]), None)  # a retried create issues new tokens
        refs = references(pod)
        configmaps: list[Obj] = []
        secrets: list[Obj] = []
        for kind, name in refs.all():
            obj = await self._get(kind, namespace, name, refs.is_required(kind, name))
            if obj is not None:
                (configmaps if kind == "ConfigMap" else secrets).append(_slim(obj))
        projected = [await self._projected(pod, volume) for volume in (pod.get("spec") or {}).get("volumes") or []
                     if isinstance(volume, dict) and isinstance(volume.get("projected"), dict)]
        return {"pod": pod, "configmaps": configmaps or None, "secrets": secrets or None,
                "projectedvolumesmaps": projected or None, "jobscriptURL": ""}

    async def _projected(self, pod: Obj, volume: Obj) -> Obj:
        """One projected volume as interLink's ConfigMap-shaped map: metadata.name = volume, data = path -> text."""
        meta = pod["metadata"]
        namespace = str(meta["namespace"])
        files: dict[str, str] = {}
        for source in volume["projected"].get("sources") or []:
            if not isinstance(source, dict):
                continue
            if isinstance(source.get("serviceAccountToken"), dict):
                item = source["serviceAccountToken"]
                audience = item.get("audience")
                token, expires = await self.issue_token(pod, str(audience) if audience else None)
                files[str(item.get("path") or "token")] = token
                self._issued(str(meta["uid"]), expires)
            for key, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
                if isinstance(source.get(key), dict):
                    item = source[key]
                    obj = await self._get(kind, namespace, str(item.get("name")), not item.get("optional"))
                    if obj is not None:
                        files.update(self._keyed(_decoded(obj, kind), item.get("items")))
            if isinstance(source.get("downwardAPI"), dict):
                for item in source["downwardAPI"].get("items") or []:
                    field_path = ((item or {}).get("fieldRef") or {}).get("fieldPath")
                    if field_path and item.get("path"):
                        files[str(item["path"])] = _downward(pod, str(field_path))
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": str(volume.get("name")), "namespace": namespace}, "data": files}

    @staticmethod
    def _keyed(data: dict[str, str], items: Any) -> dict[str, str]:
        if not items:
            return dict(data)
        return {str(i["path"]): data[i["key"]] for i in items if isinstance(i, dict) and i.get("key") in data
                and i.get("path")}
