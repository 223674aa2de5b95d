"""`pods/{name}/log`, proxied to the node's kubelet endpoint the way the real apiserver does it (kubernetes.md).

The real one: picks the container (the only one, or refuses with the list of names), finds the pod's node, dials
the node address by preference of type (here InternalIP first, configurable) at
`status.daemonEndpoints.kubeletEndpoint.Port` (10250 when 0) over HTTPS with its kubelet-client certificate, without
verifying the kubelet's certificate unless a kubelet CA is configured, requests
`/containerLogs/{ns}/{pod}/{container}` with the log options as query, and streams the answer back. A pod with no
node yet has an empty log (204, no body). A kubelet error becomes a Status the way the apiserver's
GenericHttpResponseChecker makes it: 400 and 500 keep the kubelet's text, a 403 keeps it with the resource named
after it, and the others (404 above all) get the apiserver's own words, e.g. "the server could not find the
requested resource ( pods/log NAME)" (kubernetes.md, "Seen on a real kube-apiserver").
"""

from __future__ import annotations

import json
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
# NewGenericServerResponse: code → (reason, message); None keeps the kubelet's text.
_GENERIC: dict[int, tuple[str, str | None]] = {
    401: ("Unauthorized", "the server has asked for the client to provide credentials"),
    403: ("Forbidden", None), 404: ("NotFound", "the server could not find the requested resource"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    406: ("NotAcceptable", None), 409: ("Conflict", "the server reported a conflict"),
    415: ("UnsupportedMediaType", None),
    422: ("Invalid", "the server rejected our request due to an error in our request"),
    429: ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing "
                     "the request")}


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


def kubelet_error(code: int, text: str, pod: str) -> StatusError:
    """The Status the apiserver answers for a kubelet's error answer `code` with body `text`."""
    if code == 400:
        return bad_request(text)
    if code == 500:
        return StatusError(500, "InternalError", f"Internal error occurred: {text}", {"causes": [{"message": text}]})
    reason, message = _GENERIC.get(code, ("InternalError" if code >= 500 else "Unknown", ""))
    if message is None:
        message = text
    elif not message:
        message = (f"an error on the server ({json.dumps(text)}) has prevented the request from succeeding"
                   if code >= 500 else f"the server responded with the status code {code} but did not return more "
                                       "information")
    # The verb is empty, hence the blank after the parenthesis.
    return StatusError(code, reason, f"{message} ( pods/log {pod})", {"name": pod, "kind": "pods/log"})


async def open_log(registry: Registry, kubelet: KubeletClient, namespace: str, name: str, params: dict[str, str]
                   ) -> tuple[str, AsyncIterator[bytes] | None]:
    """Connect to the kubelet and return (content type, body stream), no stream for a pod not on a node yet;
    errors raise a Status before any byte."""
    pod = registry.current(by_kind("Pod"), namespace, name)
    container = _container(pod, params.get("container"))
    forwarded = _check_options(name, params)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        return "", None  # LogLocation gives no location: the answer is 204 with no body, not an error
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
        text = (await response.aread())[:50000].decode(errors="replace")  # maxReadLength; not trimmed
        await response.aclose()
        await client.aclose()
        raise kubelet_error(response.status_code, text, name)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()
            await client.aclose()

    return response.headers.get("content-type", "text/plain"), body()
