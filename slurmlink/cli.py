"""The one entry point: `slurmlink api|vk|proxy|run|get|logs|delete|demo`, their configs' checks and tools."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from slurmlink import __version__
from slurmlink.config import ConfigError, load_config
from slurmlink.devcluster.commands import app as dev_cluster_app
from slurmlink.logs import LogFormat
from slurmlink.logs import configure as configure_logging

if TYPE_CHECKING:
    from slurmlink.runner import ApiTarget

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Run Kubernetes pods as SLURM jobs, authorised by EGI Check-in.")
app.add_typer(dev_cluster_app, name="dev-cluster", help="A real single-node SLURM on this machine.")
config_app = typer.Typer(no_args_is_help=True, add_completion=False)
app.add_typer(config_app, name="config", help="Example configurations, their JSON Schema and reference.")
console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        print(f"slurmlink {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="Print the version and exit.")] = False) -> None:
    """Run Kubernetes pods as SLURM jobs, authorised by EGI Check-in."""

ApiUrl = Annotated[str, typer.Option("--api", envvar="SLURMLINK_API_URL", help="URL of slurmlink api.")]
TokenOpt = Annotated[str | None, typer.Option("--token-file", envvar="SLURMLINK_API_TOKEN_FILE",
                                              help="File with the API's bearer token.")]
CaOpt = Annotated[str | None, typer.Option("--ca-file", envvar="SLURMLINK_API_CA_FILE",
                                           help="CA of an https:// API's certificate (default: the system's).")]
CertOpt = Annotated[str | None, typer.Option("--cert-file", envvar="SLURMLINK_API_CERT_FILE",
                                             help="Client certificate, for an API that requires one.")]
KeyOpt = Annotated[str | None, typer.Option("--key-file", envvar="SLURMLINK_API_KEY_FILE",
                                            help="The client certificate's private key.")]
LogFormatOpt = Annotated[LogFormat, typer.Option("--log-format", envvar="SLURMLINK_LOG_FORMAT",
                                                 help="text, or json: one JSON object per line.")]


def _token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        problem = f"--token-file (SLURMLINK_API_TOKEN_FILE): cannot read {path}: {exc.strerror}"
        raise _config_error(None, problem) from exc


def _target(api_url: str, token_file: str | None, ca_file: str | None, cert_file: str | None,
            key_file: str | None) -> ApiTarget:
    from slurmlink.runner import ApiTarget  # the commands import what they use when they run (a fast --help)

    if (cert_file is None) != (key_file is None):
        raise _config_error(None, "--cert-file and --key-file go together")
    return ApiTarget(api_url, _token(token_file), ca_file, cert_file, key_file)


def _config_error(source: Path | None, problem: object) -> typer.Exit:
    """Print one line naming the file (or variable) and the key, and give the exit code for configuration errors.

    Errors found while loading already name their source; errors found while building the service (a secret
    file, a static map, the pool database) name the key, and get the file prepended here."""
    text = " ".join(str(problem).split())  # one line, even for YAML parser messages
    if source is not None and not text.startswith(f"{source}:"):
        text = f"{source}: {text}"
    for handler in logging.getLogger().handlers:
        handler.flush()  # what was logged before comes first (the API and the proxy write their log in batches)
    console.print(Text.assemble(("configuration error: ", "red"), text), soft_wrap=True)  # no markup, no wrapping
    return typer.Exit(2)


def _batched_logging(log_level: str, log_format: LogFormat) -> None:
    """The log written every 0.2 s, not line by line: a service that logs a line or two per request
    (bench/README.md). Until its servers take SIGTERM over, SIGTERM exits through Python's exit hooks, which
    write what is pending."""
    configure_logging(log_level, log_format, batched=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


@app.command()
def api(config: Annotated[Path | None, typer.Option("--config", "-c", envvar="SLURMLINK_API_CONFIG",
                                                    help="YAML configuration file.")] = None,
        log_level: str = "info", log_format: LogFormatOpt = LogFormat.text) -> None:
    """Serve the interLink-compatible API (mode 2: submits with sbatch at the site)."""
    import uvloop

    from slurmlink.api.app import create_app, listeners
    from slurmlink.api.backends import make_backend
    from slurmlink.api.config import ApiConfig
    from slurmlink.listeners import Servers
    from slurmlink.statepaths import api_state, prepare

    _batched_logging(log_level, log_format)
    try:
        settings = load_config(ApiConfig, config)
        prepare(api_state(settings))
        application = create_app(settings, make_backend(settings))
        servers = Servers(listeners(settings, application), log_level,
                          on_stop=application.state.service.registry.changes.close)
    except (ConfigError, ValueError, OSError) as exc:
        raise _config_error(config, exc) from exc
    servers.run(loop_factory=uvloop.new_event_loop)  # a cheaper loop per request, as the proxy's


@app.command()
def proxy(config: Annotated[Path, typer.Option("--config", "-c", envvar="SLURMLINK_PROXY_CONFIG",
                                               help="YAML configuration file.")],
          log_level: str = "info", log_format: LogFormatOpt = LogFormat.text) -> None:
    """Serve the Check-in-enabled SLURM REST API (mode 1): an authorising, user-mapping proxy to slurmrestd."""
    import uvloop

    from slurmlink.listeners import Servers
    from slurmlink.proxy import create_app
    from slurmlink.proxy.app import listeners
    from slurmlink.proxy.config import ProxyConfig
    from slurmlink.statepaths import prepare, proxy_state

    _batched_logging(log_level, log_format)
    try:
        settings = load_config(ProxyConfig, config)
        prepare(proxy_state(settings))
        application = create_app(settings)
        servers = Servers(listeners(settings, application), log_level,
                          on_stop=application.state.proxy.end_long_polls)
    except (ConfigError, ValueError, OSError) as exc:
        raise _config_error(config, exc) from exc
    servers.run(loop_factory=uvloop.new_event_loop)  # a cheaper loop per request: bench/README.md


@app.command()
def vk(config: Annotated[Path | None, typer.Option("--config", "-c", envvar="SLURMLINK_VK_CONFIG",
                                                   help="YAML configuration file.")] = None,
       log_level: str = "info", log_format: LogFormatOpt = LogFormat.text) -> None:
    """Run the virtual kubelet: a Kubernetes node whose pods become jobs through an interLink API."""
    from slurmlink.statepaths import prepare, vk_state
    from slurmlink.vk.config import VkConfig
    from slurmlink.vk.service import run as run_vk

    configure_logging(log_level, log_format)
    for noisy in ("httpx", "httpx2"):  # one line per request would drown the rest
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_config(VkConfig, config)
        prepare(vk_state(settings))
        asyncio.run(run_vk(settings))
    except ConfigError as exc:
        raise _config_error(config, exc) from exc


class Service(StrEnum):
    api = "api"
    proxy = "proxy"
    vk = "vk"


@app.command("check-config")
def check_config(
        service: Annotated[Service, typer.Argument(help="Whose configuration: api, proxy or vk.")],
        config: Annotated[Path, typer.Option("--config", "-c", help="YAML configuration file.")],
        online: Annotated[bool, typer.Option(help="Also reach issuers, slurmrestd, the API and the apiserver.")]
        = False,
        proxy_config: Annotated[Path | None, typer.Option(
            help="api only: the site proxy's configuration, to compare job_root with its files.job_root.")] = None,
        root: Annotated[Path | None, typer.Option(
            help="Look up the files the configuration names below this directory (an unpacked image, a "
                 "staged tree) instead of /.")] = None) -> None:
    """Check a service's configuration and what it names (files, modes, job root, commands) before starting it.

    One line per check; exit code 0 without errors, 2 for configuration errors, 1 when only --online failed."""
    from slurmlink.checks.run import check

    if proxy_config is not None and service != Service.api:
        raise _config_error(None, "--proxy-config goes with check-config api")
    logging.disable(logging.WARNING)  # the clients' own warnings would repeat the findings
    reports, code = check(service.value, config, online=online, proxy_config=proxy_config, root=root)
    styles = {"ok": "green", "warning": "yellow", "error": "red"}
    out = Console(highlight=False, soft_wrap=True)
    for report in reports:
        for finding, line in zip(report.findings, report.lines(), strict=True):
            out.print(Text.assemble((line[:8], styles[finding.level]), line[8:]))
    raise typer.Exit(code)


@app.command("vk-node-delete")
def vk_node_delete(config: Annotated[Path | None, typer.Option("--config", "-c", envvar="SLURMLINK_VK_CONFIG",
                                                               help="The vk's YAML configuration file.")] = None,
                   repeat_for: Annotated[float, typer.Option(
                       "--repeat-for", min=0, help="Keep deleting it this many seconds (a vk still stopping may "
                       "register it again).")] = 0.0) -> None:
    """Delete the vk's Node object (node.name of the config), e.g. when uninstalling the vk."""
    import httpx2
    from lightkube import ApiError

    from slurmlink.vk.config import VkConfig
    from slurmlink.vk.nodedelete import delete_node

    try:
        settings = load_config(VkConfig, config)
        deleted = asyncio.run(delete_node(settings, repeat_for))
    except ConfigError as exc:
        raise _config_error(config, exc) from exc
    except (ApiError, httpx2.HTTPError, OSError) as exc:  # refused (RBAC) or the apiserver away: say so, exit 1
        console.print(Text.assemble(("error: ", "red"), f"deleting node {settings.node.name}: {exc}"), soft_wrap=True)
        raise typer.Exit(1) from exc
    name = settings.node.name
    if deleted == 0:
        console.print(f"node {name} was already gone")
    elif deleted == 1:
        console.print(f"node {name} deleted")
    else:
        console.print(f"node {name} deleted, and {deleted - 1} more time(s): a vk still stopping registered it again")


@app.command()
def run(manifests: Annotated[list[Path], typer.Argument(help="Pod manifest, plus ConfigMap/Secret files.",
                                                        exists=True, dir_okay=False)],
        api_url: ApiUrl = "http://127.0.0.1:3000", token_file: TokenOpt = None, ca_file: CaOpt = None,
        cert_file: CertOpt = None, key_file: KeyOpt = None,
        timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600.0) -> None:
    """Send a pod to the API, follow its state, then print its logs. Exit code 0 if it succeeded."""
    from slurmlink.runner import run_pod

    api = _target(api_url, token_file, ca_file, cert_file, key_file)
    phase = asyncio.run(run_pod(manifests, api, timeout, console))
    raise typer.Exit(0 if phase == "Succeeded" else 1)


def _pod_ref(namespace: str, uid: str, name: str) -> dict[str, object]:
    return {"metadata": {"namespace": namespace, "uid": uid, "name": name or uid}}


@app.command()
def get(uid: str, namespace: str = "default", name: str = "", api_url: ApiUrl = "http://127.0.0.1:3000",
        token_file: TokenOpt = None, ca_file: CaOpt = None, cert_file: CertOpt = None,
        key_file: KeyOpt = None) -> None:
    """Show a pod's status as the API reports it."""
    from slurmlink.runner import get_pod

    api = _target(api_url, token_file, ca_file, cert_file, key_file)
    asyncio.run(get_pod(_pod_ref(namespace, uid, name), api, console))


@app.command()
def logs(uid: str, container: Annotated[str, typer.Option("--container", "-c")], namespace: str = "default",
         follow: Annotated[bool, typer.Option("--follow", "-f")] = False, tail: int = 0,
         previous: Annotated[bool, typer.Option("--previous", "-p", help="the instance before the last restart")]
         = False, api_url: ApiUrl = "http://127.0.0.1:3000", token_file: TokenOpt = None,
         ca_file: CaOpt = None, cert_file: CertOpt = None, key_file: KeyOpt = None) -> None:
    """Print (or follow) a container's log."""
    from slurmlink.runner import print_logs

    asyncio.run(print_logs(_pod_ref(namespace, uid, ""), container, follow, tail,
                           _target(api_url, token_file, ca_file, cert_file, key_file), previous))


@app.command()
def delete(uid: str, namespace: str = "default", api_url: ApiUrl = "http://127.0.0.1:3000",
           token_file: TokenOpt = None, ca_file: CaOpt = None, cert_file: CertOpt = None,
           key_file: KeyOpt = None) -> None:
    """Delete a pod: its job is cancelled (SIGTERM, then SIGKILL after the grace period)."""
    api = _target(api_url, token_file, ca_file, cert_file, key_file)

    async def go() -> str:
        async with api.client() as client:
            return await client.delete(_pod_ref(namespace, uid, ""))

    console.print(asyncio.run(go()).strip())


@app.command()
def demo(pod: Annotated[Path | None, typer.Argument(help="Pod manifest (default: a hello-world pod).",
                                                    exists=True, dir_okay=False)] = None,
         port: int = 3000) -> None:
    """Start a local SLURM and `slurmlink api`, run an example pod end to end, stop the API."""
    from slurmlink.demo import run_demo

    raise typer.Exit(run_demo(pod, port, console))


@config_app.command("example")
def config_example(name: Annotated[str | None, typer.Argument(help="The example's name; none: list them.")]
                   = None) -> None:
    """Print a shipped example configuration (e.g. `vk`, `proxy`, `api-mode2`), to start a file from."""
    from slurmlink import examples

    if name is None:
        print("\n".join(examples.config_names()))
        return
    try:
        print(examples.config_path(name).read_text(), end="")
    except examples.UnknownExample as exc:
        console.print(Text.assemble(("error: ", "red"), exc.message), soft_wrap=True)
        raise typer.Exit(2) from exc


@config_app.command("schema")
def config_schema(service: Service) -> None:
    """Print the JSON Schema of a service's configuration file (for editors and validators)."""
    from slurmlink.configref import json_schema

    print(json.dumps(json_schema(service.value), indent=2))


@config_app.command("reference")
def config_reference(update: Annotated[Path | None, typer.Option(
        help="Rewrite the generated tables of this markdown file (docs/configuration.md) in place.")] = None) -> None:
    """Print the key tables of docs/configuration.md, generated from the configuration's models."""
    from slurmlink import configref

    if update is None:
        print("\n".join(f"## {name}\n\n{configref.table(name)}" for name in configref.TABLES))
        return
    text = update.read_text()
    new = configref.update_markdown(text)
    if new != text:
        update.write_text(new)
    console.print(f"{update}: {'updated' if new != text else 'already up to date'}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
