"""`pods/{name}/log`, proxied to the node's kubelet endpoint the way the real apiserver does it (kubernetes.md).

The real one: picks the container (the only one, or refuses with the list of names), finds the pod's node, dials
the node address by preference of type (here InternalIP first, configurable) at
`status.daemonEndpoints.kubeletEndpoint.Port` (10250 when 0) over HTTPS with its kubelet-client certificate, without
verifying the kubelet's certificate unless a kubelet CA is configured, requests
`/containerLogs/{ns}/{pod}/{container}` with the log options as query, and streams the answer back. A kubelet
error becomes a Status with the kubelet's code and text.
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .errors import StatusError, bad_request, invalid, not_found
from .registry import Registry
from .resources import by_kind

FORWARDED = ("follow", "previous", "timestamps", "sinceSeconds", "sinceTime", "tailLines", "limitBytes")
DEFAULT_KUBELET_PORT = 10250
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class KubeletClient:
    cert: Path
    key: Path
    ca: Path | None = None  # --kubelet-certificate-authority; None: the kubelet's certificate is not verified
    preferred_address_types: tuple[str, ...] = ("InternalIP", "Hostname", "InternalDNS", "ExternalIP",
                                                "ExternalDNS")

    def ssl_context(self) -> ssl.SSLContext:
        if self.ca is not None:
            context = ssl.create_default_context(cafile=str(self.ca))
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def _container(pod: dict[str, Any], requested: str | None) -> str:
    spec = pod.get("spec") or {}
    names = [c["name"] for c in spec.get("containers") or []]
    init_names = [c["name"] for c in spec.get("initContainers") or []]
    name = pod["metadata"]["name"]
    if not requested:
        if len(names) == 1:
            return names[0]
        message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
        if init_names:
            message += f" or one of the init containers: [{' '.join(init_names)}]"
        raise bad_request(message)
    if requested not in names + init_names + [c["name"] for c in spec.get("ephemeralContainers") or []]:
        raise bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def _check_options(name: str, params: dict[str, str]) -> dict[str, str]:
    forwarded = {key: params[key] for key in FORWARDED if params.get(key) not in (None, "", "false")}
    for key, minimum in (("tailLines", 0), ("limitBytes", 1), ("sinceSeconds", 1)):
        if key in forwarded:
            try:
                ok = int(forwarded[key]) >= minimum
            except ValueError:
                ok = False
            if not ok:
                raise invalid("PodLogOptions", "", name, [(key, f"Invalid value: {forwarded[key]}: must be "
                                                                f"greater than or equal to {minimum}")])
    if "sinceSeconds" in forwarded and "sinceTime" in forwarded:
        raise invalid("PodLogOptions", "", name, [("sinceSeconds", "Forbidden: at most one of `sinceTime` or "
                                                                   "`sinceSeconds` may be specified")])
    return forwarded


def _kubelet_location(node: dict[str, Any], preferred: tuple[str, ...]) -> tuple[str, int]:
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    for kind in preferred:
        for address in addresses:
            if address.get("type") == kind and address.get("address"):
                port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0
                return address["address"], int(port) or DEFAULT_KUBELET_PORT
    raise StatusError(500, "InternalError", f"no preferred addresses found; known addresses: {addresses}")


async def open_log(registry: Registry, kubelet: KubeletClient, namespace: str, name: str, params: dict[str, str]
                   ) -> tuple[str, AsyncIterator[bytes]]:
    """Connect to the kubelet and return (content type, body stream); errors raise a Status before any byte."""
    pod = registry.current(by_kind("Pod"), namespace, name)
    container = _container(pod, params.get("container"))
    forwarded = _check_options(name, params)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    node = registry.store.get("/nodes", "", node_name)
    if node is None:
        raise not_found("", "nodes", node_name)
    host, port = _kubelet_location(node, kubelet.preferred_address_types)
    host = f"[{host}]" if ":" in host else host
    path = "/".join(urllib.parse.quote(part, safe="") for part in (namespace, name, container))
    url = f"https://{host}:{port}/containerLogs/{path}"
    client = httpx.AsyncClient(verify=kubelet.ssl_context(), timeout=httpx.Timeout(10.0, read=None))
    try:
        response = await client.send(client.build_request("GET", url, params=forwarded), stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise StatusError(500, "InternalError", f'Get "{url}": {exc}') from None
    if response.status_code >= 300:
        text = (await response.aread())[:1 << 20].decode(errors="replace").strip()
        await response.aclose()
        await client.aclose()
        code = response.status_code
        raise StatusError(code, _REASONS.get(code, "InternalError"), text or f"the kubelet answered {code}")

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()
            await client.aclose()

    return response.headers.get("content-type", "text/plain"), body()
