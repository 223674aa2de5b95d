"""`pods/exec` and `pods/attach` as a v1.36 apiserver serves them to kubectl (kubernetes.md): kubectl speaks
WebSocket (`v5.channel.k8s.io`, else `v4`), and the apiserver translates to SPDY/3.1 towards the node's
kubelet (its StreamTranslator): `POST /{exec|attach}/{ns}/{pod}/{container}?command=..&input=1&output=1
&error=1&tty=1` with `Upgrade: SPDY/3.1` and the X-Stream-Protocol-Version offers v5 down to channel.k8s.io,
as measured, then one SPDY stream per channel with its `streamtype` header.

Like the real one, it upgrades kubectl's WebSocket first and reports a failure to reach the kubelet as a
Status on the error channel. Errors of the request itself (no such pod or container, no node yet) are
answered before the upgrade. The SPDY side is slurmlink's own module (slurmlink.streams.spdy); its interop
with Go's SPDY is shown by kubectl's SPDY fallback, which `spdy_passthrough` relays untouched to the kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.parse

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from slurmlink.streams import remotecommand as rc
from slurmlink.streams.spdy import SpdySession, SpdyStream
from slurmlink.streams.upgrade import SPDY, Answer, dial, switch_protocols

from .errors import StatusError, bad_request, not_found
from .logs import KubeletClient, _container, _kubelet_location
from .registry import Registry
from .resources import by_kind

log = logging.getLogger(__name__)
# What a v1.36 apiserver offers the kubelet, in its order (measured).
OFFERED_TO_KUBELET = (rc.V5, rc.V4, rc.V3, rc.V2, rc.V1)
CHUNK = 32 * 1024


def _truthy(params: dict[str, list[str]], name: str) -> bool:
    return any(value.lower() in ("1", "true") for value in params.get(name, []))


def exec_options(verb: str, params: dict[str, list[str]]) -> rc.ExecOptions:
    command = tuple(params.get("command", []))
    if verb == "exec" and not command:
        raise bad_request("you must specify at least 1 command")
    options = rc.ExecOptions(command, _truthy(params, "stdin"), _truthy(params, "stdout"),
                             _truthy(params, "stderr"), _truthy(params, "tty"))
    if not (options.stdin or options.stdout or options.stderr):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    return options.checked()


def kubelet_target(registry: Registry, kubelet: KubeletClient, verb: str, namespace: str, name: str,
                   params: dict[str, list[str]]) -> tuple[str, int, str]:
    """(host, port, path of the kubelet's route) for this pod, or a StatusError as the apiserver answers."""
    pod = registry.current(by_kind("Pod"), namespace, name)
    container = _container(pod, next(iter(params.get("container") or []), None))
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot {verb} into a container in a completed pod; current phase is {phase}")
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    node = registry.store.get("/nodes", "", node_name)
    if node is None:
        raise not_found("", "nodes", node_name)
    host, port = _kubelet_location(node, kubelet.preferred_address_types)
    path = "/".join(urllib.parse.quote(part, safe="") for part in (verb, namespace, name, container))
    return host, port, "/" + path


def portforward_target(registry: Registry, kubelet: KubeletClient, namespace: str, name: str
                       ) -> tuple[str, int, str]:
    """(host, port, `/portForward/{ns}/{pod}`) of a Running pod; the apiserver refuses any other phase."""
    pod = registry.current(by_kind("Pod"), namespace, name)
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Running":
        raise bad_request(f"pod {name} is not running and cannot be port-forwarded; current phase is {phase}")
    node = registry.store.get("/nodes", "", (pod.get("spec") or {}).get("nodeName") or "")
    if node is None:
        raise bad_request(f"pod {name} does not have a host assigned")
    host, port = _kubelet_location(node, kubelet.preferred_address_types)
    return host, port, "/" + "/".join(urllib.parse.quote(part, safe="") for part in ("portForward", namespace, name))


async def _dial_kubelet(kubelet: KubeletClient, host: str, port: int, target: str) -> Answer:
    headers = [("Upgrade", SPDY), *((rc.PROTOCOL_HEADER, offer) for offer in OFFERED_TO_KUBELET)]
    return await dial(host, port, target, headers, ssl_context=kubelet.ssl_context())


async def websocket_exec(websocket: WebSocket, registry: Registry, kubelet: KubeletClient, verb: str,
                         namespace: str, name: str) -> None:
    """kubectl's WebSocket, translated to SPDY streams to the kubelet."""
    params = urllib.parse.parse_qs(websocket.scope["query_string"].decode("latin-1"), keep_blank_values=True)
    options = exec_options(verb, params)
    host, port, path = kubelet_target(registry, kubelet, verb, namespace, name, params)
    protocol = rc.negotiate(websocket.scope.get("subprotocols") or [], rc.WEBSOCKET_PROTOCOLS)
    if protocol is None:
        raise bad_request(f"unable to upgrade: no common protocol, the server supports {list(rc.WEBSOCKET_PROTOCOLS)}")
    await websocket.accept(subprotocol=protocol)
    try:
        query = urllib.parse.urlencode(options.kubelet_query())
        answer = await _dial_kubelet(kubelet, host, port, f"{path}?{query}")
        if answer.streams is None:
            text = answer.body.decode(errors="replace").strip()
            raise StatusError(500, "InternalError", f"Internal error occurred: unable to upgrade connection: {text}")
        chosen = answer.header(rc.PROTOCOL_HEADER) or rc.V1
        await _translate(websocket, SpdySession(*answer.streams, server=False), options, chosen)
    except StatusError as error:
        with contextlib.suppress(Exception):
            await websocket.send_bytes(rc.frame(rc.ERROR, json.dumps(error.status()).encode()))
    except (OSError, TimeoutError) as exc:
        status = rc.failure_status(f"error dialing backend: {exc}")
        with contextlib.suppress(Exception):
            await websocket.send_bytes(rc.frame(rc.ERROR, json.dumps(status).encode()))
    with contextlib.suppress(Exception):
        await websocket.close(1000)


async def _translate(websocket: WebSocket, session: SpdySession, options: rc.ExecOptions, protocol: str) -> None:
    reading = asyncio.create_task(session.run())
    try:
        # the order of Go's SPDY executor: error first, then stdin, stdout, stderr, resize
        streams: dict[str, SpdyStream] = {}
        for kind in ("error", "stdin", "stdout", "stderr", "resize"):
            if kind in options.expected_streams(protocol):
                streams[kind] = await session.open_stream({rc.STREAM_TYPE_HEADER: kind})
        outputs = [asyncio.create_task(_to_websocket(websocket, streams[kind], rc.STREAM_TYPES[kind]))
                   for kind in ("stdout", "stderr") if kind in streams]
        inputs = asyncio.create_task(_from_websocket(websocket, streams, session))
        error = await _read_all(streams["error"])
        await asyncio.gather(*outputs, return_exceptions=True)
        if error:
            with contextlib.suppress(Exception):  # kubectl may have gone already
                await websocket.send_bytes(rc.frame(rc.ERROR, error))
        inputs.cancel()
    finally:
        await session.close()
        reading.cancel()


async def _read_all(stream: SpdyStream) -> bytes:
    data = b""
    while chunk := await stream.read():
        data += chunk
    return data


async def _to_websocket(websocket: WebSocket, stream: SpdyStream, channel: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # kubectl gone: the session closes below
        while chunk := await stream.read():
            await websocket.send_bytes(rc.frame(channel, chunk))


async def _from_websocket(websocket: WebSocket, streams: dict[str, SpdyStream], session: SpdySession) -> None:
    try:
        while True:
            channel, data = rc.unframe(await websocket.receive_bytes())
            if channel == rc.STDIN and "stdin" in streams and data:
                await streams["stdin"].write(data)
            elif channel == rc.RESIZE and "resize" in streams:
                await streams["resize"].write(data)
            elif channel == rc.CLOSE and data[:1] == bytes([rc.STDIN]) and "stdin" in streams:
                await streams["stdin"].close()
    except (WebSocketDisconnect, ValueError, KeyError, RuntimeError):
        await session.close()  # kubectl went away: so does the connection to the kubelet


async def spdy_passthrough(request: Request, registry: Registry, kubelet: KubeletClient, verb: str,
                           namespace: str, name: str) -> Response:
    """kubectl's SPDY (its fallback, or KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false): relayed byte for byte to
    the kubelet after both upgrades, as the apiserver's UpgradeAwareHandler does."""
    params = urllib.parse.parse_qs(request.url.query, keep_blank_values=True)
    if verb == "portforward":
        host, port, path = portforward_target(registry, kubelet, namespace, name)
        query = request.url.query  # the ports, as given
    else:
        host, port, path = kubelet_target(registry, kubelet, verb, namespace, name, params)
        query = urllib.parse.urlencode(exec_options(verb, params).kubelet_query())
    headers = [("Upgrade", SPDY), *((rc.PROTOCOL_HEADER, offer) for offer in request.headers.getlist(
        rc.PROTOCOL_HEADER))]
    answer = await dial(host, port, f"{path}?{query}", headers, ssl_context=kubelet.ssl_context())
    if answer.streams is None:
        text = answer.body.decode(errors="replace").strip()
        raise StatusError(answer.status if answer.status < 500 else 500, "InternalError", text)
    chosen = answer.header(rc.PROTOCOL_HEADER) or ""
    reader, writer = switch_protocols(request.scope, [("Upgrade", SPDY), (rc.PROTOCOL_HEADER, chosen)])
    up_reader, up_writer = answer.streams

    async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()

    tasks = [asyncio.create_task(copy(reader, up_writer)), asyncio.create_task(copy(up_reader, writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        up_writer.close()
        writer.close()
    return Response()


def stream_verb(path: str) -> tuple[str, str, str] | None:
    """(verb, namespace, pod) for /api/v1/namespaces/{ns}/pods/{pod}/{exec|attach|portforward}; None
    otherwise."""
    parts = path.strip("/").split("/")
    if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" \
            and parts[6] in ("exec", "attach", "portforward"):
        return parts[6], parts[3], parts[5]
    return None


PORTFORWARD_PROTOCOL = "portforward.k8s.io"
TUNNELED_PORTFORWARD = f"{SPDY}+{PORTFORWARD_PROTOCOL}"  # kubectl's WebSocket subprotocol since 1.31


async def websocket_portforward(websocket: WebSocket, registry: Registry, kubelet: KubeletClient, namespace: str,
                                name: str) -> None:
    """kubectl port-forward's SPDY tunnelled in WebSocket binary messages: unwrapped and relayed as plain
    SPDY/3.1 to the kubelet (the apiserver's tunnelling handler), after the kubelet's own 101."""
    if TUNNELED_PORTFORWARD not in (websocket.scope.get("subprotocols") or []):
        raise bad_request(f"unable to upgrade: the server supports only {TUNNELED_PORTFORWARD}")
    host, port, path = portforward_target(registry, kubelet, namespace, name)
    query = websocket.scope["query_string"].decode("latin-1")
    headers = [("Upgrade", SPDY), (rc.PROTOCOL_HEADER, PORTFORWARD_PROTOCOL)]
    answer = await dial(host, port, f"{path}?{query}", headers, ssl_context=kubelet.ssl_context())
    if answer.streams is None:
        text = answer.body.decode(errors="replace").strip()
        raise StatusError(answer.status if answer.status < 500 else 500, "InternalError", text)
    await websocket.accept(subprotocol=TUNNELED_PORTFORWARD)
    up_reader, up_writer = answer.streams

    async def to_kubelet() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                up_writer.write(await websocket.receive_bytes())
                await up_writer.drain()

    async def to_kubectl() -> None:
        while data := await up_reader.read(CHUNK):
            await websocket.send_bytes(data)

    tasks = [asyncio.create_task(to_kubelet()), asyncio.create_task(to_kubectl())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        up_writer.close()
        with contextlib.suppress(Exception):
            await websocket.close(1000)
