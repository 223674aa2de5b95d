"""`site_policy:` checked: offline, that each entry's VO is one the identity policy admits; online, that the
partitions, accounts and QoS it names exist in SLURM (mode 2: sinfo and sacctmgr as the API would run them;
the proxy: slurmrestd's /partitions and, with slurmdbd, /slurmdb's accounts and QoS, as the SlurmUser)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Sequence
from typing import Any

import httpx

from slurmlink.checks.report import Report
from slurmlink.sitepolicy.config import SitePolicySection

KEY = "site_policy.vos"
TIMEOUT_SECONDS = 10.0


def check_site_policy(report: Report, site_policy: SitePolicySection, admitted: Sequence[str] | None) -> None:
    """`admitted`: the VOs of identity.policy (None: this service knows no VOs, so the policy never applies)."""
    if not site_policy.vos:
        return
    if admitted is None:
        report.warning("site_policy", "set, but this service does not know its users' VOs (no `identity:`; in "
                                      "mode 1 the site's proxy applies its own site_policy): it is not applied")
        return
    for vo in dict.fromkeys(entry.vo for entry in site_policy.vos):
        if all(e.group or e.role for e in site_policy.vos if e.vo == vo):
            report.warning(KEY, f"VO {vo} has entries for some groups or roles only: its other members run under "
                                "the site's settings (add an entry without group and role, last)")
    for i, entry in enumerate(site_policy.vos):
        if entry.vo not in admitted:
            report.error(f"{KEY}.{i}.vo", f"{entry.vo} is not one of identity.policy.vos: no user can be in it")
        else:
            report.ok(f"{KEY}.{i}", f"VO {entry.vo}: account {entry.account or '(user default)'}, partitions "
                                    f"{', '.join(entry.partitions) or '(any)'}")


def compare(report: Report, site_policy: SitePolicySection, partitions: set[str] | None,
            accounts: set[str] | None, qos: set[str] | None, where: str) -> None:
    """Each name the policy uses against what SLURM has (None: SLURM could not tell; a warning). Pure."""
    kinds = (("partition", partitions, "partitions"), ("account", accounts, "account"), ("QoS", qos, "qos"))
    for kind, known, _ in kinds:
        if known is None and any(_names(entry, kind) for entry in site_policy.vos):
            report.warning(KEY, f"{where} cannot list each {kind}: those named are not checked")
    for i, entry in enumerate(site_policy.vos):
        for kind, known, field in kinds:
            named = _names(entry, kind)
            missing = sorted(set(named) - known) if known is not None else []
            if missing:
                report.error(f"{KEY}.{i}.{field}", f"{', '.join(missing)}: no such {kind} in SLURM ({where})")
            elif known is not None and named:
                report.ok(f"{KEY}.{i}.{field}", f"{', '.join(named)}: known to SLURM")


def _names(entry: Any, kind: str) -> list[str]:
    if kind == "partition":
        return [*entry.partitions, *([entry.default_partition] if entry.default_partition else [])]
    if kind == "account":
        return [entry.account] if entry.account else []
    return [*entry.qos, *([entry.default_qos] if entry.default_qos else [])]


async def check_with_commands(report: Report, site_policy: SitePolicySection, bin_dir: str | None,
                              slurm_conf: str | None) -> None:
    """Mode 2: what sinfo and sacctmgr list (sacctmgr needs slurmdbd)."""
    if not site_policy.vos:
        return
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **({"SLURM_CONF": slurm_conf} if slurm_conf else {})}

    def run(*argv: str) -> set[str] | None:
        command = os.path.join(bin_dir, argv[0]) if bin_dir else argv[0]
        try:
            done = subprocess.run([command, *argv[1:]], env=env, capture_output=True, text=True,
                                  timeout=TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return {line.strip() for line in done.stdout.splitlines() if line.strip()} if done.returncode == 0 else None

    partitions, accounts, qos = await asyncio.gather(
        asyncio.to_thread(run, "sinfo", "-h", "-a", "-o", "%R"),
        asyncio.to_thread(run, "sacctmgr", "-n", "-P", "show", "account", "format=account"),
        asyncio.to_thread(run, "sacctmgr", "-n", "-P", "show", "qos", "format=name"))
    compare(report, site_policy, partitions, accounts, qos, "sinfo/sacctmgr")


async def check_with_slurmrestd(report: Report, site_policy: SitePolicySection, upstream: str, version: str,
                                headers: dict[str, str]) -> None:
    """The proxy: slurmrestd's partitions, and slurmdbd's accounts and QoS when slurmrestd serves /slurmdb."""
    if not site_policy.vos:
        return
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http:
        async def names(path: str, key: str) -> set[str] | None:
            try:
                answer = await http.get(f"{upstream}{path}", headers=headers)
                items = answer.json().get(key) if answer.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                return None
            return {str(i.get("name")) for i in items if isinstance(i, dict)} if isinstance(items, list) else None

        partitions = await names(f"/slurm/{version}/partitions/", "partitions")
        accounts = await names(f"/slurmdb/{version}/accounts/", "accounts")
        qos = await names(f"/slurmdb/{version}/qos/", "qos")
    compare(report, site_policy, partitions, accounts, qos, "slurmrestd")
