"""interLink wire format: bodies shaped exactly as the Go VK / interLink API send them, and our replies."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.encoders import jsonable_encoder

from slurmlink.wire.gojson import GO_ZERO_TIME, WireError, dump_wire
from slurmlink.wire.interlink import (
    ContainerLogOpts,
    CreateRequest,
    CreateStruct,
    LogStruct,
    PingResponse,
    PodCreateRequests,
    PodStatus,
    ResourcesResponse,
    RetrievedPodData,
    Taint,
    parse_create,
    parse_log_request,
    parse_ping,
    parse_pods,
    parse_statuses,
)

UID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"

# A v1.Pod as client-go marshals it after the VK took it (Go drops empty k8s fields itself: omitempty).
POD: dict[str, Any] = {
    "metadata": {
        "name": "hello",
        "namespace": "team-a",
        "uid": UID,
        "resourceVersion": "48213",
        "creationTimestamp": "2026-07-01T09:12:44Z",
        "annotations": {"slurmlink.io/token-secret": "egi-token"},
    },
    "spec": {
        "volumes": [
            {"name": "settings", "configMap": {"name": "app-settings", "defaultMode": 420}},
            {"name": "token", "secret": {"secretName": "egi-token", "defaultMode": 420}},
            {
                "name": "kube-api-access-x7k2p",
                "projected": {
                    "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}],
                    "defaultMode": 420,
                },
            },
        ],
        "initContainers": [{"name": "fetch", "image": "busybox:1.36", "resources": {}}],
        "containers": [
            {
                "name": "main",
                "image": "ghcr.io/example/app:1.0",
                "command": ["python", "-m", "app"],
                "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
                "volumeMounts": [
                    {"name": "settings", "mountPath": "/etc/app"},
                    {"name": "token", "readOnly": True, "mountPath": "/var/run/egi"},
                ],
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "IfNotPresent",
            },
            {"name": "sidecar", "image": "busybox:1.36", "resources": {}},
        ],
        "restartPolicy": "Never",
        "nodeName": "slurm-vk",
        "tolerations": [{"key": "virtual-node.interlink/no-schedule", "operator": "Exists"}],
    },
    "status": {"phase": "Pending", "qosClass": "Burstable"},
}

CONFIGMAP: dict[str, Any] = {
    "metadata": {"name": "app-settings", "namespace": "team-a", "uid": "c1", "creationTimestamp": None},
    "data": {"app.yaml": "level: debug\n"},
}
SECRET: dict[str, Any] = {
    "metadata": {"name": "egi-token", "namespace": "team-a", "creationTimestamp": "2026-07-01T09:00:00Z"},
    "data": {"access_token": "ZXlKaGJHY2lPaUpTVXpJMU5pSjkuZXhhbXBsZQ=="},  # Go sends []byte as base64
    "type": "Opaque",
}
PROJECTED: dict[str, Any] = {
    "metadata": {"name": "kube-api-access-x7k2p", "creationTimestamp": None},
    "data": {
        "token": "eyJhbGciOi.sa.token",
        "ca.crt": "-----BEGIN CERTIFICATE-----\n",
        "namespace": "team-a",
    },
}


def vk_body() -> dict[str, Any]:
    """PodCreateRequests exactly as the Go VK posts it to interLink's /create."""
    return {
        "pod": copy.deepcopy(POD),
        "configmaps": None,
        "secrets": [copy.deepcopy(SECRET)],
        "persistentvolumes": None,
        "projectedvolumesmaps": [copy.deepcopy(PROJECTED)],
        "jobscriptURL": "",
    }


def plugin_body() -> dict[str, Any]:
    """RetrievedPodData as interLink >= 0.5 posts it to a plugin: objects repeated per container."""
    return {
        "pod": copy.deepcopy(POD),
        "container": [
            {
                "name": "fetch",
                "configMaps": None,
                "projectedvolumemaps": None,
                "secrets": None,
                "emptyDirs": None,
                "persistentVolumeClaims": None,
            },
            {
                "name": "main",
                "configMaps": [copy.deepcopy(CONFIGMAP)],
                "projectedvolumemaps": [copy.deepcopy(PROJECTED)],
                "secrets": [copy.deepcopy(SECRET)],
                "emptyDirs": None,
                "persistentVolumeClaims": None,
            },
            {
                "name": "sidecar",
                "configMaps": [copy.deepcopy(CONFIGMAP)],
                "projectedvolumemaps": [copy.deepcopy(PROJECTED)],
                "secrets": [copy.deepcopy(SECRET)],
                "emptyDirs": None,
                "persistentVolumeClaims": None,
            },
        ],
        "jobConfig": {
            "SingularityHubProxy": {"server": "", "master_token": "", "cache_validity_seconds": 0},
            "ApptainerOptions": {"executable": "", "fakeroot": False, "containall": False},
            "Volumes": {"scratch_area": "", "apptainer_cachedir": "", "image_dir": ""},
        },
    }


# --- /create ----------------------------------------------------------------------------------------


def test_vk_create_request() -> None:
    req = parse_create(vk_body())
    assert isinstance(req, CreateRequest)
    assert (req.uid, req.name, req.namespace) == (UID, "hello", "team-a")
    assert req.pod == POD
    assert req.configmaps == []  # Go's null slice
    assert req.secrets == [SECRET]
    assert req.secrets[0]["data"]["access_token"] == SECRET["data"]["access_token"]  # base64 kept as is
    assert req.projected == [PROJECTED]


def test_plugin_create_collects_objects_from_containers_once() -> None:
    req = parse_create(plugin_body())
    assert req.pod == POD
    assert req.configmaps == [CONFIGMAP]
    assert req.secrets == [SECRET]
    assert req.projected == [PROJECTED]


def test_pre_05_list_form_is_the_same_request() -> None:
    assert parse_create([plugin_body()]) == parse_create(plugin_body())
    assert parse_create(json.dumps([plugin_body()]).encode()) == parse_create(plugin_body())


def test_plugin_body_without_volumes() -> None:
    body = {"pod": POD, "container": [{"name": "main"}]}
    assert parse_create(body) == CreateRequest(pod=POD, configmaps=[], secrets=[], projected=[])


def test_create_request_is_frozen() -> None:
    req = parse_create(vk_body())
    with pytest.raises(AttributeError):
        req.pod = {}  # type: ignore[misc]


def test_keys_match_case_insensitively() -> None:
    vk = vk_body()
    shouted = {
        "POD": vk["pod"],
        "Secrets": vk["secrets"],
        "ProjectedVolumesMaps": vk["projectedvolumesmaps"],
        "JobScriptUrl": "",
    }
    assert parse_create(shouted) == parse_create(vk)

    plugin = plugin_body()
    for c in plugin["container"]:
        c["ConfigMaps"] = c.pop("configMaps")
        c["SECRETS"] = c.pop("secrets")
        c["ProjectedVolumeMaps"] = c.pop("projectedvolumemaps")
    plugin["Container"] = plugin.pop("container")
    assert parse_create(plugin) == parse_create(plugin_body())

    assert CreateStruct.from_wire({"podUid": UID, "PODJID": "4242"}) == CreateStruct(
        pod_uid=UID, pod_jid="4242"
    )
    st = PodStatus.from_wire({"Name": "hello", "uid": UID, "NAMESPACE": "team-a", "jid": "7"})
    assert (st.name, st.uid, st.namespace, st.jid) == ("hello", UID, "team-a", "7")


def test_unknown_keys_are_ignored_and_missing_fields_defaulted() -> None:
    body = vk_body() | {"futureField": {"x": 1}}
    del body["secrets"], body["jobscriptURL"]
    req = parse_create(body)
    assert req.secrets == [] and req.projected == [PROJECTED]
    assert PodCreateRequests.from_wire(body).jobscript_url == ""


def test_go_nulls_for_scalars_are_zero_values() -> None:
    assert CreateStruct.from_wire({"PodUID": UID, "PodJID": None}).pod_jid == ""
    assert PodStatus.from_wire({"UID": UID, "containers": None, "initContainers": None}).containers == []


def _without(path: str) -> dict[str, Any]:
    body = vk_body()
    *parents, leaf = path.split(".")
    node = body
    for p in parents:
        node = node[p]
    del node[leaf]
    return body


def _with(path: str, value: Any, body: Any = None) -> Any:
    body = vk_body() if body is None else body
    *parents, leaf = path.split(".")
    node = body
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[leaf] = value
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "pod: missing"),
        ({"pod": None, "configmaps": None}, "pod: missing"),
        ({"pod": "hello"}, "pod: Input should be a valid dictionary"),
        (_without("pod.metadata"), "pod.metadata: missing"),
        (_without("pod.metadata.uid"), "pod.metadata.uid: missing"),
        (_with("pod.metadata.uid", ""), "pod.metadata.uid: missing"),
        (_with("pod.metadata.uid", 42), "pod.metadata.uid: expected a string"),
        (_without("pod.metadata.namespace"), "pod.metadata.namespace: missing"),
        (_without("pod.metadata.name"), "pod.metadata.name: missing"),
        (_with("pod.spec.containers", []), "pod.spec.containers: missing"),
        (_with("pod.spec.containers", None), "pod.spec.containers: missing"),
        (_without("pod.spec"), "pod.spec.containers: missing"),
        (_with("configmaps", {"app-settings": {}}), "configmaps: Input should be a valid list"),
        (_with("secrets", ["egi-token"]), "secrets[0]: Input should be a valid dictionary"),
        (_with("secrets", [{"data": {}}]), "secrets[0].metadata.name: missing"),
        (_with("jobscriptURL", 5), "jobscriptURL: Input should be a valid string"),
        (vk_body() | {"container": []}, "container: mixes RetrievedPodData and PodCreateRequests keys"),
        (
            _with("container.1.secrets.0.metadata", {}, plugin_body()),
            "container[1].secrets[0].metadata.name: missing",
        ),
        (_with("container", "main", plugin_body()), "container: Input should be a valid list"),
        (
            _with("container.0.emptyDirs", [7], plugin_body()),
            "container[0].emptyDirs[0]: Input should be a valid string",
        ),
        ([], "body: expected a list of one RetrievedPodData, got 0"),
        ([plugin_body(), plugin_body()], "body: expected a list of one RetrievedPodData, got 2"),
        (["pod"], "[0]: expected a JSON object, got str"),
        ([_with("pod.metadata.uid", None, plugin_body())], "[0].pod.metadata.uid: missing"),
        (42, "body: expected a JSON object, got int"),
        (None, "body: expected a JSON object, got NoneType"),
        (b"{not json", "body: not valid JSON"),
    ],
)
def test_malformed_create_bodies_name_the_field(body: Any, message: str) -> None:
    with pytest.raises(WireError) as err:
        parse_create(body)
    assert str(err.value).startswith(message)
    assert isinstance(err.value, ValueError)


# --- /status, /delete -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], None, b"[]", b"null", "", b"  "])
def test_status_ping_bodies(body: Any) -> None:
    assert parse_pods(body) == []


def test_status_and_delete_bodies() -> None:
    assert parse_pods([POD]) == [POD]  # the VK sends one pod per /status call
    assert parse_pods(json.dumps([POD, POD])) == [POD, POD]
    assert parse_pods(POD) == [POD]  # /delete: a single v1.Pod
    no_spec = {"metadata": POD["metadata"]}
    assert parse_pods([no_spec]) == [no_spec]  # identity is enough to look a pod up


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{}], "[0]: missing"),
        ([POD, {"metadata": {"name": "x", "namespace": "team-a"}}], "[1].metadata.uid: missing"),
        ({"metadata": {"uid": UID}}, "pod.metadata.name: missing"),
        ([UID], "[0]: expected a Pod object, got str"),
        ('"hello"', "body: expected a list of pods, a pod or null, got str"),
    ],
)
def test_malformed_pod_lists_name_the_field(body: Any, message: str) -> None:
    with pytest.raises(WireError, match=r"^" + message.replace("[", r"\[").replace("]", r"\]")):
        parse_pods(body)


def test_status_reply_in_go_shape() -> None:
    status = PodStatus(
        name="hello",
        uid=UID,
        namespace="team-a",
        jid="4242",
        containers=[
            {
                "name": "main",
                "state": {"running": {"startedAt": "2026-07-01T09:13:10Z"}},
                "lastState": {},
                "ready": True,
                "restartCount": 0,
                "image": "ghcr.io/example/app:1.0",
                "imageID": "",
            }
        ],
    )
    wire = status.to_wire()
    assert list(wire) == ["name", "UID", "namespace", "JID", "containers", "initContainers"]
    assert wire["initContainers"] is None
    assert '"initContainers": null' in json.dumps(wire)
    assert dump_wire([status]) == [wire]
    assert dump_wire([]) is None  # a nil []PodStatus
    assert jsonable_encoder(status) == wire  # what FastAPI sends for a returned model


def test_parse_status_reply() -> None:
    body = [
        {
            "name": "hello",
            "UID": UID,
            "namespace": "team-a",
            "JID": "1",
            "containers": None,
            "initContainers": None,
        }
    ]
    assert parse_statuses(body) == [PodStatus(name="hello", uid=UID, namespace="team-a", jid="1")]
    assert parse_statuses(b"null") == []
    with pytest.raises(WireError, match=r"^\[0\]\.containers: Input should be a valid list"):
        parse_statuses([{"UID": UID, "containers": {"main": {}}}])


# --- /getLogs ---------------------------------------------------------------------------------------


def log_body(**opts: Any) -> dict[str, Any]:
    """LogStruct as the VK sends it for `kubectl logs hello -c main --tail=20`."""
    return {
        "Namespace": "team-a",
        "PodUID": UID,
        "PodName": "hello",
        "ContainerName": "main",
        "Opts": {
            "Tail": 20,
            "Bytes": 0,
            "Timestamps": False,
            "Follow": False,
            "Previous": False,
            "SinceSeconds": 0,
            "SinceTime": GO_ZERO_TIME,
        }
        | opts,
    }


def test_log_request_with_go_zero_time() -> None:
    req = parse_log_request(log_body())
    assert (req.namespace, req.pod_uid, req.pod_name, req.container_name) == ("team-a", UID, "hello", "main")
    assert req.opts.tail == 20 and req.opts.limit_bytes == 0
    assert req.opts.since_time is None
    assert req.to_wire() == log_body()


def test_log_request_since_time_and_tolerant_spellings() -> None:
    req = parse_log_request(log_body(Tail=0, SinceTime="2026-07-01T11:13:10+02:00"))
    assert req.opts.since_time == datetime(2026, 7, 1, 9, 13, 10, tzinfo=UTC)
    assert req.to_wire()["Opts"]["SinceTime"] == "2026-07-01T09:13:10Z"
    assert parse_log_request(log_body(SinceTime=None)).opts.since_time is None

    lower = {
        "namespace": "team-a",
        "poduid": UID,
        "containername": "main",
        "opts": {"tail": 0, "LimitBytes": 1024, "follow": True},
    }  # LimitBytes: the Python SDK's name
    req = parse_log_request(lower)
    assert req.opts.limit_bytes == 1024 and req.opts.follow
    assert req.to_wire()["Opts"]["Bytes"] == 1024
    assert parse_log_request({"Namespace": "team-a", "PodUID": UID, "ContainerName": "main"}).opts == (
        ContainerLogOpts()
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (log_body(Bytes=4096), "Opts.Bytes: Tail and Bytes are both set"),
        (
            log_body(Tail=0, SinceSeconds=60, SinceTime="2026-07-01T09:13:10Z"),
            "Opts.SinceTime: SinceSeconds and SinceTime are both set",
        ),
        (log_body(Tail=-1), "Opts.Tail: must not be negative"),
        (log_body(Tail=0, Bytes=-5), "Opts.Bytes: must not be negative"),
        (log_body(SinceSeconds=-60), "Opts.SinceSeconds: must not be negative"),
        (log_body(Tail="twenty"), "Opts.Tail: Input should be a valid integer"),
        (log_body(SinceTime="yesterday"), "Opts.SinceTime: Input should be a valid datetime"),
        (log_body() | {"Namespace": "Team_A"}, "Namespace: 'Team_A' is not a DNS label"),
        (log_body() | {"Namespace": "x" * 64}, "Namespace: "),
        (log_body() | {"Namespace": "team-a\n"}, "Namespace: 'team-a\\n' is not a DNS label"),
        (log_body() | {"Namespace": None}, "Namespace: missing"),
        (log_body() | {"PodUID": ""}, "PodUID: missing"),
        ({k: v for k, v in log_body().items() if k != "ContainerName"}, "ContainerName: missing"),
        (log_body() | {"Opts": []}, "Opts: Input should be a valid dictionary"),
        ([log_body()], "body: Input should be a valid dictionary"),
    ],
)
def test_malformed_log_requests_name_the_field(body: Any, message: str) -> None:
    with pytest.raises(WireError) as err:
        parse_log_request(body)
    assert str(err.value).startswith(message)


# --- ping -------------------------------------------------------------------------------------------


def test_ping_response_respects_omitempty() -> None:
    unchanged = PingResponse(resources=ResourcesResponse(cpu="96", memory="512Gi", pods="1000"))
    assert unchanged.to_wire() == {
        "resources": {"cpu": "96", "memory": "512Gi", "pods": "1000", "accelerators": None}
    }  # no status, no taints key: the VK keeps the node's taints
    cleared = PingResponse(status="ok", taints=[])
    assert cleared.to_wire() == {"status": "ok", "resources": {"accelerators": None}, "taints": []}
    tainted = PingResponse(taints=[Taint(key="hpc/maintenance", value="true", effect="NoSchedule")])
    assert tainted.to_wire()["taints"] == [
        {"key": "hpc/maintenance", "value": "true", "effect": "NoSchedule"}
    ]


def test_parse_ping_replies() -> None:
    assert parse_ping(b"[]") is None
    assert parse_ping("pong") is None  # free text is a valid answer
    ping = parse_ping(
        b'{"resources":{"cpu":"8","memory":"32Gi","accelerators":[{"resourceType":'
        b'"nvidia.com/gpu","available":2}]},"taints":null}'
    )
    assert ping is not None
    assert ping.resources.cpu == "8" and ping.resources.accelerators[0].available == "2"
    assert ping.taints is None


# --- round trips ------------------------------------------------------------------------------------

GO_JSON: list[tuple[type[Any], dict[str, Any]]] = [
    (PodCreateRequests, vk_body()),
    (RetrievedPodData, plugin_body() | {"jobScript": "#!/bin/bash\necho hi\n"}),
    (CreateStruct, {"PodUID": UID, "PodJID": "4242"}),
    (
        PodStatus,
        {
            "name": "hello",
            "UID": UID,
            "namespace": "team-a",
            "JID": "4242",
            "containers": [
                {
                    "name": "main",
                    "state": {"waiting": {"reason": "Queued"}},
                    "ready": False,
                    "restartCount": 0,
                    "image": "busybox",
                    "imageID": "",
                }
            ],
            "initContainers": None,
        },
    ),
    (LogStruct, log_body(Tail=0, Follow=True, SinceTime="2026-07-01T09:13:10Z")),
    (
        PingResponse,
        {
            "status": "ok",
            "resources": {"cpu": "8", "accelerators": [{"resourceType": "nvidia.com/gpu", "available": "2"}]},
            "taints": [],
        },
    ),
]


@pytest.mark.parametrize(("model", "go_json"), GO_JSON, ids=[m.__name__ for m, _ in GO_JSON])
def test_round_trip_reproduces_go_json(model: Any, go_json: dict[str, Any]) -> None:
    parsed = model.from_wire(json.dumps(go_json))
    assert parsed.to_wire() == go_json
    assert model.from_wire(parsed.to_wire()) == parsed


def test_round_trip_through_create_request() -> None:
    req = parse_create(plugin_body())
    vk = PodCreateRequests(
        pod=req.pod, configmaps=req.configmaps, secrets=req.secrets, projectedvolumesmaps=req.projected
    )
    assert parse_create(vk.to_wire()) == req
    plugin_wire = RetrievedPodData.from_wire(plugin_body()).to_wire()
    assert "jobScript" not in plugin_wire  # omitempty
    assert plugin_wire["container"][0]["configMaps"] is None
