"""`slurmlink check-config api`: mode 2 (`backend: cli`, sbatch at the site) and mode 1 (`backend: rest`)."""

from __future__ import annotations

import pwd

from slurmlink.api.config import ApiConfig
from slurmlink.checks.commands import check_commands, locate
from slurmlink.checks.files import Fs, check_named_files, check_state
from slurmlink.checks.identity import check_identity
from slurmlink.checks.jobroot import check_agreement, check_mode2
from slurmlink.checks.online import check_healthz, check_issuers
from slurmlink.checks.report import Report
from slurmlink.checks.sitepolicy import check_site_policy, check_with_commands
from slurmlink.proxy.config import ProxyConfig
from slurmlink.slurm.cli import COMMANDS, CliConfig
from slurmlink.statepaths import api_state


def check_api(report: Report, config: ApiConfig, fs: Fs, proxy: tuple[str, ProxyConfig] | None = None) -> None:
    check_named_files(report, config, fs)
    check_state(report, api_state(config), fs)
    if config.listen.socket is not None and config.auth.bearer_token_file is None:
        report.ok("listen.socket", "no token: the socket's permissions decide who may call the API")
    elif config.auth.bearer_token_file is None and not config.auth.allow_unauthenticated:
        report.error("auth.bearer_token_file", "not set: the API refuses to start (or set "
                                               "auth.allow_unauthenticated on a single-user machine)")
    elif config.auth.allow_unauthenticated and config.auth.bearer_token_file is None:
        report.warning("auth.allow_unauthenticated", "any local user could submit as every mapped account")
    if config.backend == "cli":
        _mode2(report, config, fs)
    if config.identity is not None:
        check_identity(report, config.identity, "identity", fs)
    admitted = [vo if isinstance(vo, str) else vo.name for vo in config.identity.policy.vos] \
        if config.identity is not None and config.backend == "cli" else None
    check_site_policy(report, config.site_policy, admitted)
    if proxy is not None:
        source, proxy_config = proxy
        if config.backend != "rest":
            report.error("backend", f"a proxy ({source}) is only used with backend: rest")
        files = proxy_config.files
        check_agreement(report, config.job_root, files.job_root if files else None, source)


def _mode2(report: Report, config: ApiConfig, fs: Fs) -> None:
    check_mode2(report, "job_root", config.job_root, fs)
    check_commands(report, "cli.bin_dir", COMMANDS, config.cli.bin_dir, fs)
    runuser = CliConfig(job_root=config.job_root).runuser
    if locate(runuser, None, fs) is None:
        report.warning("cli", f"{fs.show(runuser)} not found: a root API runs SLURM's commands as each user with it")
    if fs.root is None:
        accounts = {"users.default": config.users.default,
                    **{f"users.namespaces.{ns}": account for ns, account in config.users.namespaces.items()}}
        for key, account in accounts.items():
            if account is not None:
                _account(report, key, account)


def _account(report: Report, key: str, account: str) -> None:
    try:
        entry = pwd.getpwnam(account)
    except KeyError:
        report.error(key, f"{account} is not an account on this host")
        return
    if entry.pw_uid == 0:
        report.error(key, "jobs may not run as root")
    else:
        report.ok(key, f"{account} is a local account (uid {entry.pw_uid})")


async def check_api_online(report: Report, config: ApiConfig) -> None:
    if config.identity is not None:
        await check_issuers(report, "identity.issuers", config.identity.issuers)
    if config.backend == "cli" and config.identity is not None:
        await check_with_commands(report, config.site_policy, config.cli.bin_dir, config.cli.slurm_conf)
    if config.backend == "rest" and config.rest is not None:
        if config.rest.refresh_issuers:
            await check_issuers(report, "rest.refresh_issuers", config.rest.refresh_issuers)
        await check_healthz(report, "rest.url", config.rest.url, config.rest.ca_file or True, "the proxy")
