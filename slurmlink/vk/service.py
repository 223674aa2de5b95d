"""`slurmlink vk`: the parts started together in one event loop, stopped together on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvicorn
from lightkube import AsyncClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response

from slurmlink.config import ConfigError
from slurmlink.listeners import Listener, QuietServer, admin_listener, bind_tcp
from slurmlink.vk.certfiles import CertificateFiles
from slurmlink.vk.changefeed import ChangeFeed
from slurmlink.vk.config import VkConfig
from slurmlink.vk.controller import PodController
from slurmlink.vk.csr import CONDITION, KubeCsrApi, ServingCertificates
from slurmlink.vk.csrspec import serving_hosts
from slurmlink.vk.events import EventRecorder
from slurmlink.vk.kube import make_client
from slurmlink.vk.kubelet import build_app
from slurmlink.vk.kubeletauth import KubeletAuth, KubeletGuard, PeerCertProtocol
from slurmlink.vk.lease import LeaseKeeper
from slurmlink.vk.node import NodeKeeper
from slurmlink.vk.nodewatch import NodeWatcher
from slurmlink.vk.servicerelay import ServiceRelay, ServingRules, relay_sessions
from slurmlink.vk.statusround import StatusRounds
from slurmlink.vk.tls import ServingContext, self_signed_pem, write_private
from slurmlink.vk.tokenrefresh import TokenRefresher
from slurmlink.vk.watch import PodWatcher
from slurmlink.wire.client import InterlinkClient, tls_context, token_file_reader

log = logging.getLogger(__name__)
# Connections the kubelet endpoint may hold to the API at once (`kubectl logs -f`, exec, port-forward sessions):
# past this, one more waits for a free one (api.timeout_seconds) and then gets 503.
KUBELET_API_CONNECTIONS = 1024


def _initial_certificate(config: VkConfig, scratch: Path) -> tuple[str, str]:
    """The certificate the endpoint starts with: the configured files, else a self-signed one (which `csr`
    replaces once the cluster's signer issues one)."""
    kubelet = config.kubelet
    if kubelet.tls == "files":
        assert kubelet.cert_file and kubelet.key_file
        return kubelet.cert_file, kubelet.key_file
    cert_pem, key = self_signed_pem(config.node.name, serving_hosts(config.node.internal_ip, config.node.hostname))
    cert, key_path = scratch / "self-signed.crt", scratch / "self-signed.key"
    cert.write_bytes(cert_pem)
    write_private(key_path, key)
    if kubelet.tls == "self-signed":
        log.info("kubelet endpoint: self-signed certificate (kubelet.tls: files or csr for a verifiable one)")
    return str(cert), str(key_path)


def _kubelet_server_config(config: VkConfig, app: Starlette, kube: AsyncClient, cert: str, key: str
                           ) -> tuple[uvicorn.Config, ssl.SSLContext]:
    """The kubelet endpoint's server: TLS, and every request authenticated and authorised (KubeletGuard)."""
    tls: dict[str, Any] = {"ssl_certfile": cert, "ssl_keyfile": key}
    client_ca = config.kubelet.authentication.x509.client_ca_file
    if client_ca:  # asked for, not required: bearer-token callers come without one; a foreign one fails TLS
        tls.update(ssl_ca_certs=client_ca, ssl_cert_reqs=ssl.CERT_OPTIONAL)
    else:
        log.warning("kubelet endpoint: no kubelet.authentication.x509.client_ca_file, so the apiserver's "
                    "kubelet-client certificate is not accepted and `kubectl logs` gets 401")
    open_paths = frozenset() if config.kubelet.authenticate_healthz else frozenset({"/healthz"})
    guarded_app = KubeletGuard(app, KubeletAuth(config.kubelet, config.node.name, kube), open_paths)
    server_config = uvicorn.Config(guarded_app, log_level="warning", access_log=False, http=PeerCertProtocol,
                                   lifespan="off", timeout_graceful_shutdown=2, log_config=None, **tls)
    server_config.load()  # builds the SSLContext now, so that a CSR certificate can be swapped into it later
    assert server_config.ssl is not None
    return server_config, server_config.ssl


def _api_tls(config: VkConfig) -> ssl.SSLContext:
    try:
        return tls_context(config.api.ca_file, config.api.cert_file, config.api.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"api.ca_file/cert_file/key_file: cannot be loaded: {exc}") from exc


def _admin(config: VkConfig, healthy: Callable[[], bool]) -> list[Listener]:
    """The admin listener, if configured: /healthz and /metrics in plain HTTP, for probes and Prometheus,
    which carry no client certificate the kubelet port would take."""
    async def health() -> Response:
        return PlainTextResponse("ok" if healthy() else "not ready", 200 if healthy() else 503)

    return admin_listener(config.admin, health)


async def _run_until_stopped(parts: list[Coroutine[Any, Any, None]], servers: list[uvicorn.Server]) -> None:
    """Run the vk's parts (the servers' first) until SIGTERM/SIGINT or until one part gives up."""
    stop = asyncio.Event()

    async def guarded(part: Coroutine[Any, Any, None]) -> None:
        try:
            await part
        except asyncio.CancelledError:
            raise
        except Exception:  # each part retries what it can; one that gives up stops the vk, loudly
            log.exception("a part of the vk failed; stopping")
            stop.set()

    tasks = [asyncio.create_task(guarded(part)) for part in parts]
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.should_exit = True  # a server ends by itself, after its graceful shutdown; the rest are cancelled
    for task in tasks[len(servers):]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run(config: VkConfig) -> None:
    kube = make_client(config.kube)
    api = InterlinkClient(config.api.url, token=token_file_reader(config.api.token_file),
                          timeout=config.api.timeout_seconds, verify=_api_tls(config))
    # Bound before the node is registered, so that a port of 0 (tests) is known for daemonEndpoints.
    sock = bind_tcp(config.kubelet.host, config.kubelet.port)
    port = int(sock.getsockname()[1])
    scratch = tempfile.TemporaryDirectory(prefix="slurmlink-vk-")
    cert, key = _initial_certificate(config, Path(scratch.name))

    node = NodeKeeper(config, kube, api, port)
    events = EventRecorder(kube, config.node.name)
    services = relay_api = None
    if config.services.enabled:
        assert config.services.pod_addresses is not None
        # Connections to the API of its own: a pod's relay session holds one as long as the pod serves, and
        # must never take those the status rounds and pod creation need.
        relay_api = InterlinkClient(config.api.url, token=token_file_reader(config.api.token_file),
                                    timeout=config.api.timeout_seconds, verify=_api_tls(config),
                                    max_connections=relay_sessions(config.services.pod_addresses))

        async def warn(pod: dict[str, Any], reason: str, message: str) -> None:
            await events.emit(pod, reason, message, "Warning")
        services = ServiceRelay(config.services.pod_addresses, relay_api, warn, ServingRules.of(config))
    controller = PodController(config, kube, api, events, services)
    watcher = PodWatcher(kube, config.node.name, config.watch_timeout_seconds, controller.observe,
                         controller.vanish, controller.known)
    rounds = StatusRounds(config, api, controller)
    tokens = TokenRefresher(config, controller)
    lease = LeaseKeeper(kube, config.node.name, config.lease_duration_seconds, config.lease_renew_interval,
                        node_uid=lambda: node.uid, check_node=node.check)
    node.on_registered.append(lease.kick.set)
    node_watch = NodeWatcher(kube, config.node.name, config.watch_timeout_seconds, lambda: node.uid, node.lost)

    def healthy() -> bool:
        return node.registered.is_set() and controller.adopted.is_set()

    # The kubelet endpoint's calls (logs, exec, port-forward) hold connections as long as a user's kubectl does:
    # they have their own, and never take those the status rounds and pod creation need.
    kubelet_api = InterlinkClient(config.api.url, token=token_file_reader(config.api.token_file),
                                  timeout=config.api.timeout_seconds, verify=_api_tls(config),
                                  max_connections=KUBELET_API_CONNECTIONS)
    server_config, serving_ssl = _kubelet_server_config(config, build_app(controller, kubelet_api, healthy), kube,
                                                        cert, key)
    served = [(QuietServer(server_config), sock), *((item.server("warning"), item.sock)
                                                    for item in _admin(config, healthy))]
    servers: list[uvicorn.Server] = [server for server, _ in served]
    serving = ServingContext(serving_ssl, Path(scratch.name))
    certificates = None
    rotation = None
    if config.kubelet.tls == "files":
        rotation = CertificateFiles(cert, key, serving, config.kubelet.cert_reload_seconds)
    if config.kubelet.tls == "csr":
        certificates = ServingCertificates(
            config.node.name, serving_hosts(config.node.internal_ip, config.node.hostname), config.kubelet.csr,
            KubeCsrApi(kube), serving, lambda *condition: node.set_condition(CONDITION, *condition))
        certificates.restore()

    async def start_pods() -> None:
        await node.registered.wait()
        await watcher.synced.wait()
        await rounds.adopt()

    async def start_lease() -> None:
        await node.registered.wait()
        await lease.run()

    parts: list[Coroutine[Any, Any, None]] = [
        *(server.serve(sockets=[bound]) for server, bound in served),
        node.run(), start_lease(), node_watch.run(), watcher.run(), start_pods(),
        rounds.run(),
        tokens.run(),
        *(controller.worker() for _ in range(config.workers))]
    if config.api.changes:
        parts.append(ChangeFeed(api, rounds, config.api.changes_wait_seconds).run())
    if certificates is not None:
        parts.append(certificates.run())
    if rotation is not None:
        parts.append(rotation.run())
    log.info("slurmlink vk: node %s, kubelet endpoint https://%s:%d, interLink API %s", config.node.name,
             config.node.internal_ip, port, config.api.url)
    await _run_until_stopped(parts, servers)
    if services is not None and relay_api is not None:
        await services.close()  # listeners and port-forward sessions end with the vk
        await relay_api.close()
    await kubelet_api.close()
    await api.close()
    await kube.close()
    scratch.cleanup()
