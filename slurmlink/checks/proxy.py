"""`slurmlink check-config proxy`: the SlurmUser's key or token, the job root of the file extensions, scancel
for signals, setpriv and srun for interactive steps; online, the issuers and slurmrestd (pinged with a
SlurmUser token, as the proxy's /healthz does, and asked for its diag, which only a token slurmctld accepts
gets)."""

from __future__ import annotations

import httpx

from slurmlink.checks.commands import check_commands
from slurmlink.checks.files import Fs, check_named_files, check_state
from slurmlink.checks.identity import check_identity
from slurmlink.checks.jobroot import check_mode1
from slurmlink.checks.online import TIMEOUT_SECONDS, check_issuers, shorten
from slurmlink.checks.report import Report
from slurmlink.checks.sitepolicy import check_site_policy, check_with_slurmrestd
from slurmlink.proxy import headers as header_rules
from slurmlink.proxy.apiversion import ApiVersion
from slurmlink.proxy.config import ProxyConfig
from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.slurm_token import SlurmTokenError, SlurmTokenSource
from slurmlink.statepaths import proxy_state


def check_proxy(report: Report, config: ProxyConfig, fs: Fs) -> None:
    check_named_files(report, config, fs)
    check_state(report, proxy_state(config), fs)
    check_identity(report, config.identity, "identity", fs)
    check_site_policy(report, config.site_policy, [vo if isinstance(vo, str) else vo.name
                                                   for vo in config.identity.policy.vos])
    if config.files is not None:
        check_mode1(report, "files.job_root", config.files.job_root, fs)
    else:
        report.warning("files", "not set: the status and log extensions answer 404 (slurmlink api in mode 1 "
                                "needs them)")
    if config.signals is not None:
        check_commands(report, "signals.scancel", (config.signals.scancel,), None, fs)
    if config.interactive.enabled:  # setpriv starts srun, which needs munge and slurm.conf here too
        check_commands(report, "interactive", (config.interactive.setpriv, config.interactive.srun), None, fs)


async def check_proxy_online(report: Report, config: ProxyConfig) -> None:
    await check_issuers(report, "identity.issuers", config.identity.issuers)
    await _slurmrestd(report, config)


async def _slurmrestd(report: Report, config: ProxyConfig) -> None:
    """The proxy's own way to slurmrestd: a SlurmUser token, the API version, a ping; then diag, which needs
    slurmctld to accept the token."""
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
            ping = await http.get(f"{upstream}/slurm/{version}/ping/", headers=headers)
            # ping does not authenticate the token on every release (24.11 answers 200 to any); diag does
            diag = await http.get(f"{upstream}/slurm/{version}/diag/", headers=headers) if ping.is_success else None
        except httpx.HTTPError as exc:
            report.error("upstream", f"slurmrestd at {upstream} cannot be reached: {type(exc).__name__}")
            return
    question = f"is {key} the key of slurm.conf's AuthAltParameters, and slurm_user {config.slurm_user} its SlurmUser?"
    if diag is None:  # 22.05 answers a token slurmctld does not accept with a 500 here
        report.error("upstream", f"slurmrestd at {upstream}: ping ({version}) answered {ping.status_code}: "
                                 f"{_slurm_errors(ping)}; slurmctld is down, or refuses the token ({question})")
        return
    report.ok("upstream", f"slurmrestd at {upstream} answers a SlurmUser ping ({version})")
    if diag.is_success:
        report.ok(key, "slurmctld accepts the SlurmUser token (diag)")
        await check_with_slurmrestd(report, config.site_policy, upstream, version, headers)
    else:
        report.error(key, f"slurmctld refused the SlurmUser token (diag answered {diag.status_code}: "
                          f"{_slurm_errors(diag)}): {question}")


def _slurm_errors(answer: httpx.Response) -> str:
    """slurmrestd's `errors` (their descriptions), or the start of whatever else it answered."""
    try:
        errors = answer.json().get("errors") or []
        return "; ".join(str(e.get("description") or e.get("error")) for e in errors) or shorten(answer.text)
    except (ValueError, AttributeError):
        return shorten(answer.text)
