"""`slurmlink check-config SERVICE -c FILE [--online]`: load as the service would, check, print one line each.

Exit code: 0 with no errors (warnings allowed), 2 when the configuration or its environment is wrong (as the
services exit on a configuration error), 1 when only `--online` checks failed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from slurmlink.api.config import ApiConfig
from slurmlink.checks.api import check_api, check_api_online
from slurmlink.checks.files import Fs
from slurmlink.checks.proxy import check_proxy, check_proxy_online
from slurmlink.checks.report import Report
from slurmlink.checks.vk import check_vk, check_vk_online
from slurmlink.config import ConfigError, load_config
from slurmlink.proxy.config import ProxyConfig
from slurmlink.vk.config import VkConfig

Service = Literal["api", "proxy", "vk"]
MODELS: dict[str, type[BaseModel]] = {"api": ApiConfig, "proxy": ProxyConfig, "vk": VkConfig}


def load(report: Report, model: type[BaseModel], path: Path) -> Any:
    """The model as the service loads it, or None with the loader's one-line error in `report`."""
    try:
        return load_config(model, path, report.environ)
    except ConfigError as exc:
        text = " ".join(str(exc).split())
        report.error("", text.removeprefix(f"{report.source}: "))
        return None


def check(service: Service, path: Path, *, online: bool = False, proxy_config: Path | None = None,
          root: Path | None = None, environ: Mapping[str, str] | None = None) -> tuple[list[Report], int]:
    """The reports (the file's, and the proxy's when given) and the exit code."""
    environ = dict(os.environ if environ is None else environ)
    report = Report(str(path), environ)
    reports = [report]
    fs = Fs(root)
    config = load(report, MODELS[service], path)
    if config is not None:
        report.ok("", f"a valid {service} configuration")
        proxy = None
        if proxy_config is not None:
            # the proxy's own file is checked as a model only: its environment is the site's, not this host's
            proxy_report = Report(str(proxy_config), {})
            reports.insert(0, proxy_report)
            loaded = load(proxy_report, ProxyConfig, proxy_config)
            proxy = (str(proxy_config), loaded) if loaded is not None else None
        _offline(service, report, config, fs, proxy)
    offline_errors = sum(r.errors for r in reports)
    if online and offline_errors:
        report.warning("", "--online checks skipped: fix the errors above first")
    elif online and config is not None:
        asyncio.run(_online(service, report, config))
    if offline_errors:
        return reports, 2
    return reports, 1 if report.errors else 0


def _offline(service: Service, report: Report, config: Any, fs: Fs, proxy: tuple[str, ProxyConfig] | None) -> None:
    if service == "api":
        check_api(report, config, fs, proxy)
    elif service == "proxy":
        check_proxy(report, config, fs)
    else:
        check_vk(report, config, fs)


async def _online(service: Service, report: Report, config: Any) -> None:
    checks: dict[str, Callable[[Report, Any], Awaitable[None]]] = {
        "api": check_api_online, "proxy": check_proxy_online, "vk": check_vk_online}
    await checks[service](report, config)
