"""`/exec`, `/attach` and `/portForward` on the kubelet endpoint: the apiserver's SPDY/3.1 connection,
relayed to the API.

The vk does not speak the remote-command protocol itself: once KubeletGuard has authorised the caller
(`nodes/proxy`) and the pod is found on this node, it asks the API (the same token as its other calls) for
the same upgrade (with the pod's object as the body, as `/status` carries it: an API that restarted knows
the pod's spec only from its callers), answers the apiserver with the API's 101 (and its chosen protocol),
and copies bytes both ways until either side ends or the pod leaves the node. A refusal of the API reaches
the apiserver with its status and text, as a kubelet's own would.
"""

from __future__ import annotations

import contextlib
import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from slurmlink.streams.relay import splice
from slurmlink.streams.remotecommand import PROTOCOL_HEADER
from slurmlink.streams.upgrade import SPDY, switch_protocols
from slurmlink.vk.controller import PodController
from slurmlink.wire.client import ApiCallError, InterlinkClient
from slurmlink.wire.names import ATTACH_ROUTE, EXEC_ROUTE, PORTFORWARD_ROUTE

log = logging.getLogger(__name__)
POD_KEYS = frozenset({"namespace", "pod", "uid", "container"})


async def relay(request: Request, controller: PodController, api: InterlinkClient) -> Response:
    namespace, name = request.path_params["namespace"], request.path_params["pod"]
    container = request.path_params.get("container", "")  # port-forward names none
    verb = request.url.path.split("/")[1]
    state = controller.lookup(namespace, name)
    if state is None or state.gone:
        return PlainTextResponse(f"pod {namespace}/{name} is not on this node", 404)
    if (request.headers.get("upgrade") or "").lower() != SPDY.lower():
        return PlainTextResponse("Upgrade request required", 400)
    # the pod is named by the path the caller was authorised for, never by its query
    params = [(key, value) for key, value in request.query_params.multi_items() if key not in POD_KEYS]
    params += [("namespace", namespace), ("pod", name), ("uid", state.uid), ("container", container)]
    headers = [("Connection", "Upgrade"), ("Upgrade", SPDY),
               *((PROTOCOL_HEADER, value) for value in request.headers.getlist(PROTOCOL_HEADER))]
    route = {"exec": EXEC_ROUTE, "attach": ATTACH_ROUTE, "portForward": PORTFORWARD_ROUTE}[verb]
    try:
        status, answer, body, network = await api.upgrade(route, params, headers, state.pod)
    except ApiCallError as exc:
        return PlainTextResponse(f"{verb} {namespace}/{name}/{container}: {exc}", 503)
    if network is None:
        text = body.decode(errors="replace").strip() or f"{verb}: the API answered {status}"
        if status == 501:  # the site cannot (mode 1): the pod's events say so, for `kubectl describe`
            with contextlib.suppress(Exception):
                await controller.events.emit(state.pod, f"{verb[0].upper()}{verb[1:]}NotSupported",
                                             f"{verb} is not supported with this site: {text}", "Warning")
        code = status if status in (400, 403, 404, 429, 501, 503) else 502
        return PlainTextResponse(text, code)
    chosen = next((value for key, value in answer if key.lower() == PROTOCOL_HEADER.lower()), "")
    reader, writer = switch_protocols(request.scope, [("Upgrade", SPDY), (PROTOCOL_HEADER, chosen)])

    def gone() -> bool:
        now = controller.lookup(namespace, name)
        return now is None or now.gone or now.uid != state.uid

    await splice(reader, writer, network, gone)
    return Response()  # never sent: the connection left HTTP
