"""The verbs on stored objects (create, get, list, update, patch, delete) with the real registry's rules.

Routes stay thin: everything here is callable without HTTP, which is how test helpers change state directly.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

import yaml

from . import csr as csrs
from . import events
from .admission import admit_pod, random_suffix
from .defaults import DEFAULTERS, readd_default_tolerations
from .errors import (
    STALE,
    StatusError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    invalid,
    not_found,
    timeout,
    unsupported_media_type,
)
from .patches import json_patch, merge_patch, strategic_merge
from .pki import CertificateAuthority
from .resources import TYPES, ResourceType, by_kind
from .selectors import field_matcher, label_matcher
from .store import Store
from .timefmt import format_time, normalise_times, now
from .validation import label_problems, validate_new, validate_pod_update

PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")
_SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
_TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


def _is_events_v1(rtype: ResourceType) -> bool:
    return rtype.group == "events.k8s.io"


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "managedFields")}
    return {**obj, "metadata": meta}


class Registry:
    def __init__(self, store: Store, ca: CertificateAuthority) -> None:
        self.store = store
        self.ca = ca

    # --- shapes ------------------------------------------------------------------------------------------------
    def present(self, rtype: ResourceType, obj: dict[str, Any], with_type: bool = True) -> dict[str, Any]:
        shown = copy.deepcopy(obj)
        if _is_events_v1(rtype):
            shown = events.from_core(shown)
        if with_type:
            shown["apiVersion"], shown["kind"] = rtype.api_version, rtype.kind
        else:  # items of a list carry no kind/apiVersion of their own
            shown.pop("apiVersion", None)
            shown.pop("kind", None)
        return shown

    def _incoming(self, rtype: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request must be a {rtype.kind} object")
        if body.get("apiVersion") not in (None, "", rtype.api_version):
            raise bad_request(f"the API version in the data ({body['apiVersion']}) does not match the expected API "
                              f"version ({rtype.api_version})")
        if body.get("kind") not in (None, "", rtype.kind):
            raise bad_request(f"the kind in the data ({body['kind']}) does not match the expected kind "
                              f"({rtype.kind})")
        obj = copy.deepcopy(body)
        if _is_events_v1(rtype):
            obj = events.to_core(obj)
        else:
            obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        if not isinstance(obj.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        obj.setdefault("metadata", {})
        return normalise_times(obj, rtype.kind)

    def _place(self, rtype: ResourceType, obj: dict[str, Any], namespace: str) -> None:
        meta = obj["metadata"]
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)

    def _require_namespace(self, namespace: str, creating: bool) -> None:
        found = self.store.get("/namespaces", "", namespace)
        if found is None:
            raise not_found("", "namespaces", namespace)
        if creating and found.get("status", {}).get("phase") == "Terminating":
            # The NamespaceLifecycle admission plugin refuses new content in a terminating namespace.
            raise forbidden("", "namespaces", namespace, f"unable to create new content in namespace {namespace} "
                            "because it is being terminated")

    # --- reads -------------------------------------------------------------------------------------------------
    def current(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rtype.store_key, namespace if rtype.namespaced else "", name)
        if obj is None:
            raise not_found(rtype.group, rtype.plural, name)
        return obj

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        return self.present(rtype, self.current(rtype, namespace, name))

    def select(self, rtype: ResourceType, namespace: str, params: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
        labels = label_matcher(params.get("labelSelector"))
        translate = events.field_label_to_core if _is_events_v1(rtype) else (lambda label: label)
        fields = field_matcher(params.get("fieldSelector"), rtype, translate)
        items, rv = self.store.snapshot(rtype.store_key, namespace if rtype.namespaced else "")
        return [item for item in items if labels(item) and fields(item)], rv

    def list(self, rtype: ResourceType, namespace: str, params: dict[str, str]) -> dict[str, Any]:
        requested = params.get("resourceVersion", "")
        items, rv = self.select(rtype, namespace, params)
        if requested not in ("", "0"):
            if not requested.isdigit():
                raise bad_request(f"invalid resource version: {requested}")
            if int(requested) > rv:
                # The real one waits ~3 s for its cache to catch up, then answers this.
                raise timeout(f"Too large resource version: {requested}, current: {rv}")
        start = 0
        if params.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(params["continue"]))
                start_key = tuple(token["start"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
            start = next((i for i, item in enumerate(items)
                          if (item["metadata"].get("namespace", ""), item["metadata"]["name"]) > start_key),
                         len(items))
        items = items[start:]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = int(params.get("limit") or 0)
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = {"rv": rv, "start": [last.get("namespace", ""), last["name"]]}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version, "metadata": meta,
                "items": [self.present(rtype, item, with_type=False) for item in items]}

    # --- create ------------------------------------------------------------------------------------------------
    def create(self, rtype: ResourceType, namespace: str, body: Any, caller: Caller,
               dry_run: bool = False) -> dict[str, Any]:
        obj = self._incoming(rtype, body)
        self._place(rtype, obj, namespace)
        meta = obj["metadata"]
        if rtype.namespaced:
            self._require_namespace(namespace, creating=True)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(rtype.kind, rtype.group, "", [("metadata.name",
                                                             "Required value: name or generateName is required")])
            meta["name"] = meta["generateName"] + random_suffix()  # generateName gets 5 random characters
        for field in (*_SYSTEM_META, "resourceVersion", "selfLink", "managedFields"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = format_time(now())
        if rtype.kind in DEFAULTERS:
            DEFAULTERS[rtype.kind](obj)
        validate_new(rtype, obj)
        if rtype.kind == "Pod":
            admit_pod(self.store, obj)
        elif rtype.kind == "Event":
            events.validate_core(obj, via_events_v1=_is_events_v1(rtype))
        elif rtype.kind == "CertificateSigningRequest":
            csrs.prepare_new(obj, caller.user, caller.groups)
        if dry_run:
            return self.present(rtype, obj)
        stored = self.store.create(rtype.store_key, obj)
        if stored is None:
            raise already_exists(rtype.group, rtype.plural, meta["name"])
        if rtype.kind == "Namespace":
            self._populate_namespace(meta["name"])
        return self.present(rtype, stored)

    def _populate_namespace(self, namespace: str) -> None:
        # What kube-controller-manager adds to every namespace: the "default" ServiceAccount and the cluster CA
        # (kubernetes.md: a bare apiserver has no "default" account, and pod creation is then Forbidden).
        system = Caller("system:kube-controller-manager")
        sa = {"metadata": {"name": "default", "namespace": namespace}}
        cm = {"metadata": {"name": "kube-root-ca.crt", "namespace": namespace},
              "data": {"ca.crt": self.ca.cert_pem.decode()}}
        for kind, body in (("ServiceAccount", sa), ("ConfigMap", cm)):
            try:
                self.create(by_kind(kind), namespace, body, system)
            except StatusError as exc:
                if exc.code != 409:
                    raise

    # --- update ------------------------------------------------------------------------------------------------
    def update(self, rtype: ResourceType, namespace: str, name: str, subresource: str, body: Any,
               dry_run: bool = False) -> dict[str, Any]:
        obj = self._incoming(rtype, body)
        if obj["metadata"].get("name") not in (None, "", name):
            raise bad_request(f"the name of the object ({obj['metadata']['name']}) does not match the name on the "
                              f"URL ({name})")
        obj["metadata"]["name"] = name
        self._place(rtype, obj, namespace)
        return self._write(rtype, namespace, name, subresource, obj, dry_run, from_patch=False)

    def _write(self, rtype: ResourceType, namespace: str, name: str, subresource: str, obj: dict[str, Any],
               dry_run: bool, from_patch: bool) -> dict[str, Any]:
        current = self.current(rtype, namespace, name)
        current_rv = current["metadata"]["resourceVersion"]
        rv = obj["metadata"].get("resourceVersion")
        if not rv and rtype.conditional_update_only and not from_patch:
            # Pods may not be updated unconditionally (their strategy's AllowUnconditionalUpdate is false).
            raise invalid(rtype.kind, rtype.group, name, [("metadata.resourceVersion",
                                                           "Invalid value: 0x0: must be specified for an update")])
        if rv and rv != current_rv:
            raise conflict(rtype.group, rtype.plural, name, STALE)  # kubernetes.md: PUT with a stale RV → 409
        uid = obj["metadata"].get("uid")
        if uid and uid != current["metadata"]["uid"]:
            raise conflict(rtype.group, rtype.plural, name, f"Precondition failed: UID in precondition: {uid}, "
                           f"UID in object meta: {current['metadata']['uid']}")
        new = self._combine(rtype, subresource, obj, current)
        if new == current:
            return self.present(rtype, current)  # a no-op update writes nothing and sends no watch event
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and meta.get("deletionGracePeriodSeconds") == 0:
            # The last finalizer removed from an object already deleted with grace 0: it goes now.
            if not dry_run:
                self.store.remove(rtype.store_key, meta.get("namespace", ""), name, current_rv)
            return self.present(rtype, new)
        if dry_run:
            return self.present(rtype, new)
        stored = self.store.replace(rtype.store_key, new, current_rv)
        if stored is None:
            raise conflict(rtype.group, rtype.plural, name, STALE)
        return self.present(rtype, stored)

    def _combine(self, rtype: ResourceType, subresource: str, obj: dict[str, Any], current: dict[str, Any]
                 ) -> dict[str, Any]:
        """The object to store: what the request may change on this (sub)resource, the rest as stored."""
        if subresource in ("status", "approval"):
            # kubernetes.md: the status subresource ignores spec and metadata changes.
            new = copy.deepcopy(current)
            status = copy.deepcopy(obj.get("status") or {})
            if subresource == "approval":
                new.setdefault("status", {})["conditions"] = status.get("conditions") or []
            else:
                new["status"] = status
            if rtype.kind == "Pod":
                new["status"]["qosClass"] = (current.get("status") or {}).get("qosClass")  # QoS is immutable
                self._check_pod_status(new, current)
            if rtype.kind == "CertificateSigningRequest":
                csrs.sign_if_approved(new, self.ca)
            return new
        if subresource:
            raise not_found(rtype.group, rtype.plural, current["metadata"]["name"])
        new = copy.deepcopy(obj)
        for field in _SYSTEM_META:  # set by the server only
            if field in current["metadata"]:
                new["metadata"][field] = current["metadata"][field]
            else:
                new["metadata"].pop(field, None)
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        new["metadata"].pop("managedFields", None)
        if rtype.has_status:
            # kubernetes.md: the main resource ignores status.
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        problems = label_problems(new["metadata"].get("labels") or {})
        if problems:
            raise invalid(rtype.kind, rtype.group, current["metadata"]["name"], problems)
        if rtype.kind == "Pod":
            readd_default_tolerations(new)  # DefaultTolerationSeconds admits updates too, not only creates
            validate_pod_update(new, current)
            if new.get("spec") != current.get("spec"):
                new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if rtype.kind == "Secret" and "stringData" in new:
            DEFAULTERS["Secret"](new)
        return new

    @staticmethod
    def _check_pod_status(new: dict[str, Any], old: dict[str, Any]) -> None:
        # A finished pod may be patched back to Running: the apiserver accepts it, only kubelets refuse to do it
        # (kubernetes.md, "Seen on a real kube-apiserver"). Container states are checked, as ValidatePodStatusUpdate.
        name = new["metadata"]["name"]
        policy = (old.get("spec") or {}).get("restartPolicy", "Always")
        if policy == "Always":
            return
        for list_name in ("containerStatuses", "initContainerStatuses"):
            before = {s.get("name"): s for s in (old.get("status") or {}).get(list_name) or []}
            for index, status in enumerate(new["status"].get(list_name) or []):
                previous = (before.get(status.get("name")) or {}).get("state") or {}
                terminated = previous.get("terminated")
                if terminated is None or "terminated" in (status.get("state") or {}):
                    continue
                if policy == "Never" or terminated.get("exitCode") == 0:
                    # A container that may not restart cannot leave the terminated state.
                    raise invalid("Pod", "", name, [(f"status.{list_name}[{index}].state",
                                                     "Forbidden: may not be transitioned to non-terminated state")])

    # --- patch -------------------------------------------------------------------------------------------------
    def patch(self, rtype: ResourceType, namespace: str, name: str, subresource: str, content_type: str,
              raw: bytes, caller: Caller, dry_run: bool = False) -> tuple[int, dict[str, Any]]:
        patch_type = content_type.split(";")[0].strip().lower()
        if patch_type not in PATCH_TYPES:
            raise unsupported_media_type(content_type)
        try:
            body = yaml.safe_load(raw) if patch_type.endswith("yaml") else json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        for _attempt in range(8):  # the real one retries patches that lose a race, up to a bound
            stored = self.store.get(rtype.store_key, namespace if rtype.namespaced else "", name)
            if stored is None:
                if patch_type.endswith("yaml") and not subresource:
                    # Server-side apply creates what does not exist yet.
                    return 201, self.create(rtype, namespace, {**body, "metadata": {
                        **(body.get("metadata") or {}), "name": name}}, caller, dry_run)
                raise not_found(rtype.group, rtype.plural, name)
            original = self.present(rtype, stored)
            if patch_type == "application/json-patch+json":
                patched = json_patch(original, body)
            elif patch_type == "application/merge-patch+json":
                patched = merge_patch(original, body)
            else:  # strategic merge; apply-patch is approximated by it (no managedFields here)
                patched = strategic_merge(original, body if isinstance(body, dict) else {})
            if not isinstance(patched.get("metadata"), dict):
                raise bad_request("metadata must be an object")
            explicit_rv = isinstance(body, dict) and "resourceVersion" in (body.get("metadata") or {})
            if not explicit_rv:
                patched["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
            if patched["metadata"].get("name") != name:
                raise invalid(rtype.kind, rtype.group, name, [("metadata.name", "Invalid value: field is "
                                                                                "immutable")])
            obj = self._incoming(rtype, patched)
            try:
                return 200, self._write(rtype, namespace, name, subresource, obj, dry_run, from_patch=True)
            except StatusError as exc:
                if exc.code != 409 or explicit_rv or "Precondition" in exc.message:
                    raise
        raise conflict(rtype.group, rtype.plural, name, STALE)

    # --- delete ------------------------------------------------------------------------------------------------
    def delete(self, rtype: ResourceType, namespace: str, name: str, options: dict[str, Any],
               dry_run: bool = False) -> dict[str, Any]:
        current = self.current(rtype, namespace, name)
        meta = current["metadata"]
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise conflict(rtype.group, rtype.plural, name, f"Precondition failed: UID in precondition: "
                           f"{preconditions['uid']}, UID in object meta: {meta['uid']}")
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(rtype.group, rtype.plural, name, f"Precondition failed: ResourceVersion in precondition: "
                           f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                           f"{meta['resourceVersion']}")
        if rtype.kind == "Namespace":
            return self._delete_namespace(rtype, current, dry_run)
        grace = self._grace_period(rtype, current, options.get("gracePeriodSeconds"))
        if grace is not None:  # graceful: mark (or shorten) and keep the object
            return self._mark_deleted(rtype, current, grace, dry_run)
        if meta.get("finalizers"):
            return self._mark_deleted(rtype, current, 0, dry_run)
        if not dry_run:
            gone = self.store.remove(rtype.store_key, meta.get("namespace", ""), name, meta["resourceVersion"])
            if gone is None:
                raise conflict(rtype.group, rtype.plural, name, STALE)
            current = gone
        if rtype.returns_deleted_object:
            return self.present(rtype, current)
        details: dict[str, Any] = {"name": name, "kind": rtype.plural, "uid": meta["uid"]}
        if rtype.group:
            details["group"] = rtype.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    @staticmethod
    def _grace_period(rtype: ResourceType, pod: dict[str, Any], requested: Any) -> int | None:
        """Seconds of graceful deletion still to run, or None to delete now (pods only, as CheckGracefulDelete).

        kubernetes.md: deleting a bound pod sets deletionTimestamp + deletionGracePeriodSeconds; it stays until a
        DELETE with gracePeriodSeconds=0 (and the uid precondition) confirms it.
        """
        if rtype.kind != "Pod":
            return None
        meta = pod["metadata"]
        if requested is not None:
            try:
                requested = int(requested)
            except (TypeError, ValueError):
                raise bad_request(f"invalid gracePeriodSeconds: {requested!r}") from None
        if meta.get("deletionTimestamp"):
            pending = meta.get("deletionGracePeriodSeconds")
            if not pending:
                return None
            # Already terminating: only a shorter grace period changes anything.
            return requested if requested is not None and requested < pending else -1
        period = requested if requested is not None else (pod.get("spec") or {}).get(
            "terminationGracePeriodSeconds", 0)
        if not (pod.get("spec") or {}).get("nodeName"):
            period = 0  # a pod no node has taken goes at once
        if (pod.get("status") or {}).get("phase") in _TERMINAL:
            period = 0  # so does a pod that has finished
        if period < 0:
            period = 1
        return period or None

    def _mark_deleted(self, rtype: ResourceType, current: dict[str, Any], grace: int, dry_run: bool
                      ) -> dict[str, Any]:
        pending = current["metadata"].get("deletionGracePeriodSeconds")
        if grace == -1 or (current["metadata"].get("deletionTimestamp") and pending == 0):
            return self.present(rtype, current)  # deletion already pending: nothing changes
        new = copy.deepcopy(current)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds"):
            started = dt.datetime.fromisoformat(meta["deletionTimestamp"].replace("Z", "+00:00")) - dt.timedelta(
                seconds=meta["deletionGracePeriodSeconds"])
        else:
            started = now()
        meta["deletionTimestamp"] = format_time(started + dt.timedelta(seconds=grace))
        meta["deletionGracePeriodSeconds"] = grace
        if grace == 0 and not meta.get("finalizers"):
            if not dry_run:
                self.store.remove(rtype.store_key, meta.get("namespace", ""), meta["name"], meta["resourceVersion"])
            return self.present(rtype, new)
        if dry_run:
            return self.present(rtype, new)
        stored = self.store.replace(rtype.store_key, new, current["metadata"]["resourceVersion"])
        if stored is None:
            raise conflict(rtype.group, rtype.plural, meta["name"], STALE)
        return self.present(rtype, stored)

    def _delete_namespace(self, rtype: ResourceType, current: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        name = current["metadata"]["name"]
        if name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            raise forbidden("", "namespaces", name, "this namespace may not be deleted")
        terminating = copy.deepcopy(current)
        terminating["metadata"].setdefault("deletionTimestamp", format_time(now()))
        terminating["metadata"]["deletionGracePeriodSeconds"] = 0
        terminating["status"] = {"phase": "Terminating"}
        if dry_run:
            return self.present(rtype, terminating)
        stored = self.store.replace(rtype.store_key, terminating, current["metadata"]["resourceVersion"]) or current
        # The namespace controller's work, done at once: remove the content, then the namespace.
        for other in TYPES:
            if other.namespaced and not other.storage or other.kind == "Event" and not other.group:
                for item in self.store.snapshot(other.store_key, name)[0]:
                    self.store.remove(other.store_key, name, item["metadata"]["name"])
        self.store.remove(rtype.store_key, "", name)
        return self.present(rtype, stored)

    def delete_collection(self, rtype: ResourceType, namespace: str, params: dict[str, str],
                          options: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        items, _ = self.select(rtype, namespace, params)
        deleted = []
        for item in items:
            try:
                deleted.append(self.delete(rtype, item["metadata"].get("namespace", ""), item["metadata"]["name"],
                                           options, dry_run))
            except StatusError as exc:
                if exc.code != 404:
                    raise
        return {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version,
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in deleted]}
