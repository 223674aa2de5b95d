# ruff: noqa: F811 - the `chain` fixture is named as a parameter
"""A Service in front of a pod on the virtual node (issue 15, item 3), end to end: kubectl applies the pod and
the Service to the apiserver stand-in, whose EndpointSlice controller lists the pod by the address the vk gave
it (`services.pod_addresses`, here loopback addresses) once its readiness probe passes; the test then plays
the cluster side (there is no kube-proxy here): it reads the EndpointSlice and connects to address:port,
where the vk listens and relays through the API's port-forward (mode 2) and a step of the pod's job on the
test SLURM to `python3 -m http.server` inside the job.

The dev cluster's compute node is this host, so the pod's server binds 127.0.0.1 only: a server on every
address would hold the port on the vk's addresses too.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slurmlink.devcluster import DevCluster
from tests.harness.pods import IMAGE, pod_manifest
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain, open_chain

pytestmark = pytest.mark.timeout(240)
POD_ADDRESSES = "127.77.0.0/30"  # two addresses: a third serving pod finds the range used up


@pytest.fixture(scope="module")
def serving(slurm_cluster: DevCluster, api: ApiProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Chain]:
    """A chain whose vk serves pods' ports (its own stand-in and vk, the session's API)."""
    with open_chain(slurm_cluster, api, tmp_path_factory.mktemp("vk-services"),
                    services={"enabled": True, "pod_addresses": POD_ADDRESSES}) as opened:
        yield opened


def _web_pod(name: str, port: int) -> dict[str, Any]:
    """An HTTP server in the job on `port` (declared as containerPort `http`), Ready once /state/ready exists."""
    script = (f"cd \"$(mktemp -d)\" && echo hello-from-{name} > hello.txt && "
              f"exec python3 -m http.server {port} --bind 127.0.0.1")
    container = {"name": "main", "image": IMAGE, "command": ["sh", "-c", script],
                 "ports": [{"name": "http", "containerPort": port}],
                 "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                 "readinessProbe": {"exec": {"command": ["test", "-e", "/state/ready"]}, "periodSeconds": 1,
                                    "failureThreshold": 1, "timeoutSeconds": 5}}
    pod = pod_manifest(name, "", containers=[container], volumes=[{"name": "state", "emptyDir": {}}])
    pod["metadata"]["labels"] = {"app": name}
    return pod


def _service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}


def _endpoints(chain: Chain, service: str) -> list[tuple[str, int, bool]]:
    """(address, port, ready) of each endpoint of the Service, as the cluster side reads them."""
    out = chain.kubectl("get", "endpointslices", "-l", f"kubernetes.io/service-name={service}", "-o", "json")
    found = []
    for item in json.loads(out.stdout)["items"]:
        port = next(iter(item.get("ports") or [{}])).get("port")
        for endpoint in item.get("endpoints") or []:
            found.append((endpoint["addresses"][0], int(port), bool(endpoint["conditions"]["ready"])))
    return found


def _get(address: str, port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://{address}:{port}{path}", timeout=60) as answer:
        return str(answer.read().decode())


def _listening(port: int) -> set[str]:
    """The addresses of this host on which something listens on TCP `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def _server_up(port: int) -> None:
    def answering() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0
    wait_until(answering, 60, "the job's HTTP server to listen")


def _uid_dir(chain: Chain, pod: dict[str, Any]) -> Path:
    return Path(chain.cluster.job_root) / f"default-{pod['metadata']['uid']}" / "volumes" / "state"


def test_a_service_reaches_the_server_in_the_job_once_ready(serving: Chain) -> None:
    port = free_port()
    serving.apply(_web_pod("web", port), _service("web"))
    pod = serving.wait_phase("web", ("Running",), timeout=90)
    running = wait_until(lambda: (p := serving.pod("web")) and (p.get("status") or {}).get("podIP") and p, 30,
                         "the pod's address")
    address = running["status"]["podIP"]
    assert address in ("127.77.0.1", "127.77.0.2") and running["status"]["podIPs"] == [{"ip": address}]
    _server_up(port)

    # listed but not ready while its readiness probe fails: the cluster side sends it nothing yet
    wait_until(lambda: _endpoints(serving, "web") == [(address, port, False)], 30, "a not-ready endpoint")
    _uid_dir(serving, pod).joinpath("ready").touch()
    wait_until(lambda: _endpoints(serving, "web") == [(address, port, True)], 30, "a ready endpoint")

    [(to, on, _ready)] = _endpoints(serving, "web")
    assert _get(to, on, "/hello.txt") == "hello-from-web\n"
    assert _get(to, on, "/hello.txt") == "hello-from-web\n"  # a second connection, through the same session

    # a restarted vk gives the pod the same address: the Service's endpoints do not move
    serving.vk.stop()
    assert address not in _listening(port)
    serving.vk.start()
    wait_until(lambda: address in _listening(port), 60, "the vk to listen again after its restart")
    assert serving.pod("web")["status"]["podIP"] == address  # type: ignore[index]
    assert _endpoints(serving, "web") == [(address, port, True)]
    wait_until(lambda: _answers(address, port), 60, "the Service to answer after the vk's restart")

    serving.kubectl("delete", "pod", "web", "--wait=false")
    wait_until(lambda: address not in _listening(port), 60, "the listener to close when the pod is deleted")
    with pytest.raises(ConnectionRefusedError), socket.create_connection((address, port), timeout=10):
        pass
    serving.wait_gone("web", timeout=90)
    wait_until(lambda: _endpoints(serving, "web") == [], 30, "the Service to have no endpoints")


def _answers(address: str, port: int) -> bool:
    try:
        return _get(address, port, "/hello.txt") == "hello-from-web\n"
    except OSError:
        return False


def test_without_services_a_pod_has_no_address_and_nothing_listens(chain: Chain) -> None:
    port = free_port()
    chain.apply(_web_pod("unserved", port), _service("unserved"))
    chain.wait_phase("unserved", ("Running",), timeout=90)
    _server_up(port)
    pod = chain.pod("unserved")
    assert pod is not None and "podIP" not in pod["status"] and "podIPs" not in pod["status"]
    assert _listening(port) == {"127.0.0.1"}  # the job's own server only
    wait_until(lambda: len(json.loads(chain.kubectl("get", "endpointslices", "-l",
                                                    "kubernetes.io/service-name=unserved", "-o",
                                                    "json").stdout)["items"]) == 1, 30, "the Service's slice")
    assert _endpoints(chain, "unserved") == []
    chain.kubectl("delete", "pod", "unserved", "--wait=false")
    chain.wait_gone("unserved", timeout=90)


def _events(chain: Chain, name: str) -> list[tuple[str, str, str]]:
    out = chain.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    return [(e["type"], e["reason"], e["message"]) for e in json.loads(out)["items"]]


def _pod_ip(chain: Chain, name: str) -> str:
    return str(((chain.pod(name) or {}).get("status") or {}).get("podIP") or "")


def test_a_used_up_range_is_an_event_and_a_freed_address_is_given_again(serving: Chain) -> None:
    def idle(name: str) -> dict[str, Any]:
        container = {"name": "main", "image": IMAGE, "command": ["sh", "-c", "sleep 600"],
                     "ports": [{"containerPort": free_port()}]}
        return pod_manifest(name, "", containers=[container])

    serving.apply(idle("first"), idle("second"))
    for name in ("first", "second"):
        serving.wait_phase(name, ("Running",), timeout=90)
    assert {_pod_ip(serving, "first"), _pod_ip(serving, "second")} == {"127.77.0.1", "127.77.0.2"}
    serving.apply(idle("third"))
    serving.wait_phase("third", ("Running",), timeout=90)
    wait_until(lambda: any(e[:2] == ("Warning", "ServiceAddressUnavailable") for e in _events(serving, "third")),
               30, "the Warning that no address is left")
    message = next(m for _t, reason, m in _events(serving, "third") if reason == "ServiceAddressUnavailable")
    assert "127.77.0.0/30" in message
    assert _pod_ip(serving, "third") == ""

    freed = _pod_ip(serving, "first")
    serving.kubectl("delete", "pod", "first", "--wait=false")
    wait_until(lambda: _pod_ip(serving, "third") == freed, 60, "the freed address to go to the waiting pod")
    assert serving.vk.process is not None and serving.vk.process.poll() is None  # no crash on the way
    serving.kubectl("delete", "pod", "second", "third", "--wait=false")
    for name in ("first", "second", "third"):
        serving.wait_gone(name, timeout=90)
