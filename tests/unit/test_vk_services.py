"""vk `services` without SLURM or Kubernetes: the address allocation (pure), and the relay on loopback — the
vk's listeners and its port-forward client (SPDY over the API's upgraded connection, through the real
InterlinkClient) against the API's real port-forward session, whose connecting step is the real connector
program run directly, to a real TCP server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import uvicorn
from starlette.responses import PlainTextResponse

from slurmlink.steps.portforward import CONNECTOR, PortForwardSession
from slurmlink.streams.remotecommand import PROTOCOL_HEADER
from slurmlink.streams.spdy import SpdySession
from slurmlink.streams.upgrade import SPDY, UpgradableH11, switch_protocols
from slurmlink.translate.status import Phase
from slurmlink.vk import podstatus
from slurmlink.vk.config import VkConfig
from slurmlink.vk.controller import PodController
from slurmlink.vk.events import EventRecorder
from slurmlink.vk.podaddresses import PodAddresses
from slurmlink.vk.podforward import _NetworkWriter
from slurmlink.vk.servicerelay import MAX_SESSIONS, ServiceRelay, ServingRules, relay_sessions, tcp_ports
from slurmlink.vk.state import PodState
from slurmlink.wire.client import InterlinkClient

# --- allocation ----------------------------------------------------------------------------------------------


def test_an_address_is_stable_for_its_pod_and_never_given_twice() -> None:
    addresses = PodAddresses("10.9.0.0/24")
    first = addresses.assign("uid-a")
    assert first is not None and addresses.assign("uid-a") == first
    taken = {first, *(addresses.assign(f"uid-{n}") for n in range(200))}
    assert None not in taken and len(taken) == 201  # every pod its own
    assert all(a not in ("10.9.0.0", "10.9.0.255") for a in taken)  # not the network's nor its broadcast


def test_a_restarted_vk_gives_a_pod_the_same_address() -> None:
    before = PodAddresses("10.9.0.0/16")
    shown = {uid: before.assign(uid) for uid in ("p1", "p2", "p3")}
    after = PodAddresses("10.9.0.0/16")  # deterministic: without the pods' status, the same places
    assert {uid: after.assign(uid) for uid in ("p3", "p1", "p2")} == shown


def test_the_address_a_pod_shows_is_kept_and_not_given_to_another() -> None:
    addresses = PodAddresses("10.9.0.0/24")
    assert addresses.keep("old", "10.9.0.7")
    assert addresses.keep("old", "10.9.0.7")  # seen again by the watch
    assert not addresses.keep("other", "10.9.0.7")  # someone else's: the other pod gets a new one
    assert not addresses.keep("outside", "10.10.0.7") and not addresses.keep("junk", "not an address")
    assert addresses.assign("old") == "10.9.0.7"
    assert "10.9.0.7" not in {addresses.assign(f"new-{n}") for n in range(250)}


def test_an_exhausted_range_says_so_and_a_released_address_comes_back() -> None:
    addresses = PodAddresses("10.9.0.0/30")  # two usable addresses
    assert addresses.assign("a") and addresses.assign("b")
    assert addresses.assign("c") is None
    freed = addresses.address_of("a")
    addresses.release("a")
    assert addresses.assign("c") == freed and len(addresses) == 2


def test_the_hosts_own_addresses_are_never_handed_out() -> None:
    addresses = PodAddresses("10.9.0.0/29", excluded=["10.9.0.3", "10.9.0.5", "192.0.2.1"])
    assert not addresses.keep("p", "10.9.0.3")  # shown by a pod, but the host's: not kept
    taken = {addresses.assign(f"p{n}") for n in range(4)}
    assert taken == {"10.9.0.1", "10.9.0.2", "10.9.0.4", "10.9.0.6"}
    assert addresses.assign("one more") is None


def test_the_range_must_keep_apart_from_the_hosts_own_addresses() -> None:
    def config(pod_addresses: str, **more: Any) -> VkConfig:
        return VkConfig.model_validate({"services": {"enabled": True, "pod_addresses": pod_addresses}, **more})

    assert config("127.77.0.0/24").services.port_range == (1024, 65535)
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 \(loopback\)"):
        config("127.0.0.0/8")
    with pytest.raises(ValueError, match=r"10\.1\.2\.3 \(node.internal_ip\)"):
        config("10.1.0.0/16", node={"internal_ip": "10.1.2.3"})
    with pytest.raises(ValueError, match=r"10\.1\.9\.9 \(kubelet.host\)"):
        config("10.1.0.0/16", kubelet={"host": "10.1.9.9", "authentication": {"anonymous": {"enabled": True}}})
    with pytest.raises(ValueError, match=r"10\.1\.0\.8 \(admin.host\)"):
        config("10.1.0.0/16", admin={"host": "10.1.0.8", "port": 10248})
    with pytest.raises(ValueError, match=r"10\.1\.0\.9 \(api.url\)"):
        config("10.1.0.0/16", api={"url": "http://10.1.0.9:3000"})
    served = config("10.1.0.0/16", api={"url": "https://api.example:3000"}, admin={"port": 10248},
                    services={"enabled": True, "pod_addresses": "10.1.0.0/16", "ports": "80-9000"})
    assert served.services.port_range == (80, 9000)
    assert served.own_ports() == {10250: "the vk's kubelet port", 10248: "the vk's admin port"}
    for wrong in ("1024-", "9000-80", "0-10", "http"):
        with pytest.raises(ValueError, match="ports"):
            config("10.1.0.0/16", services={"enabled": True, "pod_addresses": "10.1.0.0/16", "ports": wrong})


def test_low_ports_and_the_vks_own_ports_are_not_served() -> None:
    rules = ServingRules.of(VkConfig.model_validate({"admin": {"port": 10248}}))
    assert rules.refusal(8786) == "" and rules.refusal(65535) == ""
    assert rules.refusal(80) == "outside services.ports 1024-65535"
    assert rules.refusal(10250) == "the vk's kubelet port" and rules.refusal(10248) == "the vk's admin port"
    assert "127.0.0.1" in rules.host_addresses


def test_only_declared_tcp_ports_are_served() -> None:
    pod = {"spec": {"containers": [
        {"name": "a", "ports": [{"containerPort": 8000}, {"containerPort": 53, "protocol": "UDP"}]},
        {"name": "b", "ports": [{"containerPort": 8000, "protocol": "TCP"}, {"containerPort": 9000}]}]}}
    assert tcp_ports(pod) == ([8000, 9000], ["UDP port 53 of container a"])


def test_the_config_needs_a_range_when_enabled() -> None:
    assert not VkConfig().services.enabled
    with pytest.raises(ValueError, match="services.pod_addresses"):
        VkConfig.model_validate({"services": {"enabled": True}})
    with pytest.raises(ValueError, match="host bits"):
        VkConfig.model_validate({"services": {"enabled": True, "pod_addresses": "10.0.0.1/24"}})
    with pytest.raises(ValueError, match="IPv6 ranges are not supported yet"):
        VkConfig.model_validate({"services": {"enabled": True, "pod_addresses": "fd00:77::/64"}})


def test_the_status_carries_the_address_and_replaces_the_old_one() -> None:
    status = {"phase": "Running", "hostIP": "h", "hostIPs": [{"ip": "h"}]}
    wanted = podstatus.with_pod_ip(podstatus.Desired(status, Phase("Running")), "10.9.0.3")
    assert wanted.status["podIP"] == "10.9.0.3" and "podIP" not in status
    assert podstatus.patch_body(wanted.status)["status"]["podIPs"] == [{"ip": "10.9.0.3"}, {"$patch": "replace"}]
    assert podstatus.fingerprint(wanted.status) != podstatus.fingerprint(status)  # a new address is patched


# --- the relay on loopback ------------------------------------------------------------------------------------

RANGE = "127.88.0.0/24"


def _pod(uid: str, *ports: int) -> dict[str, Any]:
    return {"metadata": {"name": f"pod-{uid}", "namespace": "default", "uid": uid}, "status": {},
            "spec": {"containers": [{"name": "main", "ports": [{"containerPort": p} for p in ports]}]}}


async def _portforward_api(scope: Any, receive: Any, send: Any) -> None:
    """The API's /portForward, reduced to what the relay needs: the upgrade, and the real session."""
    assert scope["type"] == "http" and scope["path"] == "/slurmlink/v1/portforward", scope["path"]
    while (await receive()).get("more_body"):
        pass
    if b"uid=refused" in scope["query_string"]:  # as a mode-1 API answers
        await PlainTextResponse("port-forward is not supported with this site\n", 501)(scope, receive, send)
        return
    reader, writer = switch_protocols(scope, [("Upgrade", SPDY), (PROTOCOL_HEADER, "portforward.k8s.io")])
    step = lambda port: ([sys.executable, "-c", CONNECTOR, str(port)], {})  # noqa: E731
    await PortForwardSession(SpdySession(reader, writer, server=True), step).run()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def _api_and_server() -> AsyncIterator[tuple[InterlinkClient, int]]:
    """(a client of the API, the port of an echo server in 'the job', answering in upper case)."""
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    api, serving = await _start_api(0)
    client = InterlinkClient(f"http://127.0.0.1:{api.servers[0].sockets[0].getsockname()[1]}")
    try:
        yield client, server.sockets[0].getsockname()[1]
    finally:
        await client.close()
        api.should_exit = True
        await serving
        server.close()


async def _start_api(port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    api = uvicorn.Server(uvicorn.Config(_portforward_api, http=UpgradableH11, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(api.serve(sockets=[sock]))
    while not api.started:
        await asyncio.sleep(0.01)
    return api, serving


async def _exchange(address: str, port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(address, port)
    writer.write(payload)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


async def _exchange_or_reset(address: str, port: int, payload: bytes) -> bytes:
    try:
        return await _exchange(address, port, payload)
    except ConnectionResetError:
        return b""


def test_connections_to_the_pods_address_reach_its_server() -> None:
    async def test() -> None:
        async with _api_and_server() as (api, port):
            relay = ServiceRelay(RANGE, api)
            address, warnings = await relay.place(_pod("u1", port), "Running")
            assert address is not None and address.startswith("127.88.0.") and warnings == []
            payload = b"through the service\n" * 10000  # past the SPDY windows
            answers = await asyncio.gather(*(_exchange(address, port, payload) for _ in range(3)))
            assert answers == [payload.upper()] * 3
            assert await relay.place(_pod("u1", port), "Running") == (address, [])  # unchanged
            held_reader, held_writer = await asyncio.open_connection(address, port)
            held_writer.write(b"open ")
            assert await asyncio.wait_for(held_reader.readexactly(5), 30) == b"OPEN "
            await relay.release("u1")  # the pod ended or left: its open connections end too
            assert await asyncio.wait_for(held_reader.read(), 30) == b""
            held_writer.close()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(address, port)
            await relay.close()
    asyncio.run(test())


def test_a_finished_pod_keeps_its_shown_address_but_nothing_listens() -> None:
    async def test() -> None:
        async with _api_and_server() as (api, port):
            relay = ServiceRelay(RANGE, api)
            pod = _pod("u2", port)
            address, _ = await relay.place(pod, "Running")
            pod["status"] = {"podIP": address, "phase": "Succeeded"}
            assert await relay.place(pod, "Succeeded") == (address, [])
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(address, port)
            assert await relay.place(_pod("u3"), "Running") == (None, [])  # no ports: no address
            assert await relay.place(_pod("u4", port), "Pending") == (None, [])
            requeued = _pod("u7", port)
            first, _ = await relay.place(requeued, "Running")
            assert first is not None
            requeued["status"] = {"podIP": first, "phase": "Running"}
            assert await relay.place(requeued, "Pending") == (first, [])  # SLURM requeued its job
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(first, port)
            assert (await relay.place(_pod("u8", port), "Running"))[0] != first  # still its own
            assert await relay.place(requeued, "Running") == (first, [])  # running again: served again
            assert await _exchange(first, port, b"back\n") == b"BACK\n"
            await relay.release("u7")
            await relay.release("u8")
            udp = _pod("u6")
            udp["spec"]["containers"][0]["ports"] = [{"containerPort": 53, "protocol": "UDP"}]
            assert await relay.place(udp, "Running") == (None, [
                ("ServicePortUnsupported", "not served (only TCP is relayed): UDP port 53 of container main")])
            assert len(relay.addresses) == 0
    asyncio.run(test())


def test_a_used_up_range_is_a_warning_not_a_crash() -> None:
    async def test() -> None:
        async with _api_and_server() as (api, port):
            relay = ServiceRelay("127.88.1.0/30", api)
            assert (await relay.place(_pod("a", port), "Running"))[0]
            assert (await relay.place(_pod("b", port), "Running"))[0]
            address, warnings = await relay.place(_pod("c", port), "Running")
            assert address is None and [reason for reason, _ in warnings] == ["ServiceAddressUnavailable"]
            assert "127.88.1.0/30" in warnings[0][1]
            await relay.release("a")
            assert (await relay.place(_pod("c", port), "Running"))[0]
            await relay.close()
    asyncio.run(test())


def test_a_port_that_cannot_be_bound_is_a_warning() -> None:
    async def test() -> None:
        async with _api_and_server() as (api, port):
            relay = ServiceRelay(RANGE, api)
            address = relay.addresses.assign("busy")
            assert address is not None
            with socket.create_server((address, 0)) as taken:  # someone else holds (address, that port)
                busy = taken.getsockname()[1]
                placed, warnings = await relay.place(_pod("busy", busy, port), "Running")
                assert placed == address
                assert [reason for reason, _ in warnings] == ["ServicePortUnavailable"]
                assert f"{address}:{busy}" in warnings[0][1]
                assert await _exchange(address, port, b"still served\n") == b"STILL SERVED\n"
            await relay.close()
            relay = ServiceRelay(RANGE, api, rules=ServingRules(host_ports={10250: "the vk's kubelet port"}))
            placed, warnings = await relay.place(_pod("low", 80, 10250, port), "Running")
            assert placed is not None and warnings == [("ServicePortUnavailable", (
                f"cannot listen on {placed}:80: outside services.ports 1024-65535; "
                f"{placed}:10250: the vk's kubelet port"))]
            assert await _exchange(placed, port, b"served\n") == b"SERVED\n"
            placed, warnings = await relay.place(_pod("none", 80, 10250), "Running")
            assert placed is None and [reason for reason, _ in warnings] == ["ServicePortUnavailable"]
            assert relay.addresses.address_of("none") is None  # no listener: no address reported, none held
            await relay.close()
    asyncio.run(test())


def test_a_refused_relay_is_one_warning_and_the_connection_closes() -> None:
    async def test() -> None:
        warned: list[tuple[str, str, str]] = []

        async def warn(pod: dict[str, Any], reason: str, message: str) -> None:
            warned.append((pod["metadata"]["uid"], reason, message))

        async with _api_and_server() as (api, port):
            relay = ServiceRelay(RANGE, api, warn)
            address, _ = await relay.place(_pod("refused", port), "Running")
            assert address is not None
            for _ in range(2):
                assert await _exchange(address, port, b"x") == b""  # accepted, then closed unanswered
            assert warned == [("refused", "ServiceRelayFailed", f"a connection to port {port} at {address} could "
                               "not be relayed: port-forward is not supported with this site")]
            await relay.close()
    asyncio.run(test())


def test_a_session_an_api_restart_ended_is_opened_again() -> None:
    async def test() -> None:
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = echo.sockets[0].getsockname()[1]
        api, serving = await _start_api(0)
        api_port = api.servers[0].sockets[0].getsockname()[1]
        client = InterlinkClient(f"http://127.0.0.1:{api_port}")
        relay = ServiceRelay(RANGE, client)
        try:
            address, _ = await relay.place(_pod("u5", port), "Running")
            assert address is not None
            assert await _exchange(address, port, b"before\n") == b"BEFORE\n"
            api.should_exit = True  # the API stops: the vk's session to it ends
            await serving
            api, serving = await _start_api(api_port)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while await _exchange(address, port, b"after\n") != b"AFTER\n":  # the first may meet the old session
                assert loop.time() < deadline, "no new session after the API's restart"
                await asyncio.sleep(0.1)
        finally:
            await relay.close()
            await client.close()
            api.should_exit = True
            await serving
            echo.close()
    asyncio.run(test())


def test_each_serving_pod_holds_one_api_connection_of_the_relays_own() -> None:
    # the vk gives the relay a client of its own with this many connections (service.py): a session holds one
    # for as long as its pod serves, which the vk's other calls must never wait for
    assert relay_sessions("10.0.0.0/8") == MAX_SESSIONS and relay_sessions("10.9.0.0/30") == 2

    async def test() -> None:
        async with _api_and_server() as (api, port):
            url = str(api.http.base_url).rstrip("/")
            own = InterlinkClient(url, max_connections=relay_sessions("127.88.1.0/30"), timeout=10)
            relay = ServiceRelay("127.88.1.0/30", own)
            first, _ = await relay.place(_pod("a", port), "Running")
            second, _ = await relay.place(_pod("b", port), "Running")
            assert first and second
            held_reader, held_writer = await asyncio.open_connection(first, port)
            held_writer.write(b"held ")
            assert await asyncio.wait_for(held_reader.readexactly(5), 30) == b"HELD "
            assert await _exchange(second, port, b"both at once\n") == b"BOTH AT ONCE\n"
            held_writer.close()
            await relay.close()
            await own.close()
    asyncio.run(test())


def test_a_pods_ports_and_connections_in_flight_are_bounded() -> None:
    async def test() -> None:
        async with _api_and_server() as (api, port):
            low, high = port, 65001  # ports are served in their order: the echo server's first
            assert low < high
            relay = ServiceRelay(RANGE, api, rules=ServingRules(max_ports=1, max_connections=2))
            address, warnings = await relay.place(_pod("many", high, low), "Running")
            assert address is not None
            assert warnings == [("ServicePortUnavailable", f"cannot listen on {address}:{high}: more than "
                                 "services.max_ports_per_pod (1) ports")]
            held = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection(address, low)
                writer.write(b"held ")
                assert await asyncio.wait_for(reader.readexactly(5), 30) == b"HELD "
                held.append(writer)
            for _ in range(2):  # one too many: closed at once (reset, as what was sent is not read)
                assert await _exchange_or_reset(address, low, b"x") == b""
            assert relay.served["many"].turned_away == 2
            held.pop().close()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while await _exchange_or_reset(address, low, b"again\n") != b"AGAIN\n":  # once the closed one has ended
                assert loop.time() < deadline, "a freed place was not taken again"
                await asyncio.sleep(0.1)
            held.pop().close()
            await relay.close()
    asyncio.run(test())


def test_an_api_that_never_answers_the_upgrade_is_not_waited_for() -> None:
    async def test() -> None:
        asked: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            asked.append(writer)  # takes the request, never answers

        api = await asyncio.start_server(silent, "127.0.0.1", 0)
        client = InterlinkClient(f"http://127.0.0.1:{api.sockets[0].getsockname()[1]}", timeout=1)
        relay = ServiceRelay(RANGE, client)
        try:
            address, _ = await relay.place(_pod("silent", 8000), "Running")
            assert address is not None
            # three connections at once: the first waits out the timeout, the two queued behind it fail with it
            answers = await asyncio.wait_for(asyncio.gather(
                *(_exchange_or_reset(address, 8000, b"x") for _ in range(3))), 30)
            assert answers == [b""] * 3 and len(asked) == 1
        finally:
            await relay.close()
            await client.close()
            for writer in asked:
                writer.close()
            api.close()
    asyncio.run(test())


def test_a_terminating_pods_address_stays_its_own_until_it_is_gone() -> None:
    async def test() -> None:
        async with _api_and_server() as (api, port):
            relay = ServiceRelay("127.88.2.0/30", api)
            pod = _pod("leaving", port)
            address, _ = await relay.place(pod, "Running")
            assert address is not None
            await relay.stop_serving("leaving")  # its job ended while it terminates: nothing listens
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(address, port)
            assert relay.addresses.address_of("leaving") == address  # but no other pod gets it
            other, _ = await relay.place(_pod("other", port), "Running")
            assert other not in (None, address)
            assert (await relay.place(_pod("third", port), "Running"))[0] is None  # /30: two addresses
            await relay.release("leaving")  # its object is gone
            assert (await relay.place(_pod("third", port), "Running"))[0] == address
            await relay.close()
    asyncio.run(test())


def test_a_restarted_vk_keeps_the_address_a_terminating_pod_shows() -> None:
    relay = ServiceRelay("127.88.2.0/30", InterlinkClient("http://127.0.0.1:9"))
    pod = _pod("leaving", 8000)
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    pod["status"] = {"phase": "Running", "podIP": "127.88.2.2"}
    relay.observe(pod)
    assert relay.addresses.address_of("leaving") == "127.88.2.2"
    finished = _pod("done", 8000)
    finished["status"] = {"phase": "Succeeded", "podIP": "127.88.2.1"}
    relay.observe(finished)  # a finished pod's address is free
    assert relay.addresses.address_of("done") is None


def test_a_pod_someone_else_finished_is_no_longer_served() -> None:
    async def test() -> None:
        async with _api_and_server() as (api, port):
            relay = ServiceRelay(RANGE, api)
            controller = PodController(VkConfig(), cast(Any, None), api, EventRecorder(cast(Any, None), "node"),
                                       relay)
            pod = _pod("evicted", port)
            state = PodState.of(pod)
            running = podstatus.Desired({"phase": "Running"}, Phase("Running"))
            address = (await controller._with_address(state, running)).status["podIP"]
            assert await _exchange(address, port, b"up\n") == b"UP\n"
            pod["status"] = {"phase": "Failed", "podIP": address, "reason": "Evicted"}  # set by someone else
            assert "podIP" not in (await controller._with_address(state, running)).status
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(address, port)
            assert relay.addresses.address_of("evicted") is None
            await relay.close()
    asyncio.run(test())


def test_closing_a_pods_listeners_waits_for_its_connections_to_end() -> None:
    async def test() -> None:
        async with _api_and_server() as (api, port):
            relay = ServiceRelay(RANGE, api)
            address, _ = await relay.place(_pod("tidy", port), "Running")
            assert address is not None
            reader, writer = await asyncio.open_connection(address, port)
            writer.write(b"open ")
            assert await asyncio.wait_for(reader.readexactly(5), 30) == b"OPEN "
            relaying = list(relay.served["tidy"].connections)
            assert relaying
            await relay.release("tidy")
            assert all(task.done() for task in relaying)
            assert await asyncio.wait_for(reader.read(), 30) == b""
            writer.close()
    asyncio.run(test())


def test_a_failed_write_to_the_api_leaves_no_unretrieved_error() -> None:
    class Broken:
        async def write(self, data: bytes) -> None:
            raise OSError("the API's connection is gone")

    async def test() -> list[dict[str, Any]]:
        unretrieved: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unretrieved.append(context))
        writer = _NetworkWriter(Broken())
        writer.write(b"a WINDOW_UPDATE nobody drains")
        flushing = writer._flushing
        assert flushing is not None
        await asyncio.wait([flushing])
        del flushing, writer
        gc.collect()
        return unretrieved
    assert asyncio.run(test()) == []
