"""`slurmlink check-config proxy`: the SlurmUser's key or token, the job root of the file extensions, scancel
for signals; online, the issuers and slurmrestd (pinged with a SlurmUser token, as the proxy's /healthz does)."""

from __future__ import annotations

import httpx

from slurmlink.checks.commands import check_commands
from slurmlink.checks.files import Fs, check_named_files
from slurmlink.checks.identity import check_identity
from slurmlink.checks.jobroot import check_mode1
from slurmlink.checks.online import TIMEOUT_SECONDS, check_issuers, shorten
from slurmlink.checks.report import Report
from slurmlink.proxy import headers as header_rules
from slurmlink.proxy.apiversion import ApiVersion
from slurmlink.proxy.config import ProxyConfig
from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.slurm_token import SlurmTokenError, SlurmTokenSource


def check_proxy(report: Report, config: ProxyConfig, fs: Fs) -> None:
    check_named_files(report, config, fs)
    check_identity(report, config.identity, "identity", fs)
    if config.files is not None:
        check_mode1(report, "files.job_root", config.files.job_root, fs)
    else:
        report.warning("files", "not set: the status and log extensions answer 404 (slurmlink api in mode 1 "
                                "needs them)")
    if config.signals is not None:
        check_commands(report, "signals.scancel", (config.signals.scancel,), None, fs)


async def check_proxy_online(report: Report, config: ProxyConfig) -> None:
    await check_issuers(report, "identity.issuers", config.identity.issuers)
    await _slurmrestd(report, config)


async def _slurmrestd(report: Report, config: ProxyConfig) -> None:
    """The proxy's own way to slurmrestd: a SlurmUser token, the API version, a ping."""
    source = SlurmTokenSource(slurm_user=config.slurm_user, jwt_key_file=config.jwt_key_file,
                              token_file=config.token_file, lifespan=config.token_lifespan_seconds)
    key = "jwt_key_file" if config.jwt_key_file else "token_file"
    try:
        headers = {header_rules.USER_NAME: config.slurm_user, header_rules.USER_TOKEN: source.token()}
    except SlurmTokenError as exc:
        report.error(key, str(exc))
        return
    upstream = config.upstream.rstrip("/")
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http:
        try:
            version = await ApiVersion(config.api_version, http, upstream, lambda: headers).get()
        except Refusal as refusal:
            report.error("upstream", f"slurmrestd at {upstream}: {refusal.message}")
            return
        try:
            answer = await http.get(f"{upstream}/slurm/{version}/ping/", headers=headers)
        except httpx.HTTPError as exc:
            report.error("upstream", f"slurmrestd at {upstream} cannot be reached: {type(exc).__name__}")
            return
    if answer.status_code in (401, 403):
        report.error(key, f"slurmrestd at {upstream} refused the SlurmUser token ({answer.status_code}): is it "
                          f"the key of slurm.conf's AuthAltParameters, and slurm_user {config.slurm_user} "
                          "its SlurmUser?")
    elif answer.status_code != 200:
        hint = ""
        if answer.status_code == 500:  # how SLURM 22.05 answers a token that slurmctld does not accept
            hint = f" (a token slurmctld does not accept looks like this: is {key} the key of AuthAltParameters?)"
        report.error("upstream", f"slurmrestd at {upstream}: ping ({version}) answered {answer.status_code}: "
                                 f"{_slurm_errors(answer)}{hint}")
    else:
        report.ok("upstream", f"slurmrestd at {upstream} answers a SlurmUser ping ({version})")


def _slurm_errors(answer: httpx.Response) -> str:
    """slurmrestd's `errors` (their descriptions), or the start of whatever else it answered."""
    try:
        errors = answer.json().get("errors") or []
        return "; ".join(str(e.get("description") or e.get("error")) for e in errors) or shorten(answer.text)
    except (ValueError, AttributeError):
        return shorten(answer.text)
