"""Accounting for the dev cluster, when asked (`dev-cluster up --accounting`): a MariaDB server and slurmdbd.

MariaDB is the machine's own (Debian 12's `mariadb-server`, installed by scripts/install.sh with
SLURMLINK_SLURM_ACCOUNTING=1), run as a background daemon with its data directory under the cluster's
state directory, on a loopback port; slurmdbd is the cluster's release's (the host's for 22.05, the root's
for 24.11) and reaches it on that port. Once slurmdbd answers, sacctmgr registers the cluster and gives
each account its users (the associations jobs need when AccountingStorageEnforce=associations).

This module renders the files and command lines; cluster.py starts and stops the daemons.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

DATABASE = "slurm_acct_db"
DB_USER = "slurm"  # MariaDB account slurmdbd logs in as (from 127.0.0.1 only)
MYSQL_USER = "mysql"  # the system user Debian's package made; mariadbd runs as it
DEFAULT_ACCOUNT = "slurmlink"  # every test user's account (their default) unless the cluster is given others
# Two VOs' allocations for the site-policy tests (docs/site-policy.md): the first user is in both, the second in
# the first only, the third in neither.
VO_ACCOUNTS = ("alpha", "beta")


def missing_packages(release_has_slurmdbd: bool, path: str) -> str | None:
    """What accounting lacks on this machine, said as a fix; None when nothing. MariaDB is always the
    host's; slurmdbd is the host's for 22.05 (the root's otherwise)."""
    missing = [name for name in ("mariadbd", "mariadb-install-db", "mariadb") if shutil.which(name, path=path) is None]
    if not release_has_slurmdbd and shutil.which("slurmdbd", path=path) is None:
        missing.append("slurmdbd")
    if not missing:
        return None
    return (f"accounting needs {', '.join(missing)}: install it with "
            "`SLURMLINK_SLURM_ACCOUNTING=1 bash scripts/install.sh` (Debian's mariadb-server and slurmdbd)")


def db_password(path: Path) -> str:
    """The MariaDB password of slurmdbd, made once (only root reads the file; slurmdbd.conf repeats it)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        password = secrets.token_hex(16)
        path.touch(mode=0o600)
        path.write_text(password + "\n")
        return password


def install_db_argv(datadir: Path) -> list[str]:
    """Creates the system tables once (root may log in through the socket only, as the OS's root)."""
    return ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", f"--user={MYSQL_USER}",
            "--auth-root-authentication-method=socket", "--skip-test-db"]


def mariadbd_argv(datadir: Path, socket: Path, port: int, pid_file: Path) -> list[str]:
    # --no-defaults: nothing from /etc/mysql (the machine's own server, if any, is not ours).
    # A small buffer pool (the database holds a few hundred jobs); lock wait as SLURM's docs advise.
    return ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={socket}", f"--port={port}",
            "--bind-address=127.0.0.1", "--skip-name-resolve", f"--pid-file={pid_file}",
            "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M", "--innodb-lock-wait-timeout=900",
            "--skip-log-bin"]


def client_argv(socket: Path, sql: str) -> list[str]:
    """SQL run as MariaDB's root through its socket (allowed to the OS's root)."""
    return ["mariadb", "--no-defaults", f"--socket={socket}", "-u", "root", "--batch", "-e", sql]


def grant_sql(password: str) -> str:
    # The password is hex we made (no quote can be in it).
    return (f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}'; "
            f"ALTER USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}'; "
            f"GRANT ALL ON {DATABASE}.* TO '{DB_USER}'@'127.0.0.1';")


def render_slurmdbd_conf(*, host: str, dbd_port: int, db_port: int, password: str, munge_socket: Path,
                         jwt_key: Path, pid_file: Path, plugin_dir: str | None) -> str:
    lines = [
        "# Written by `slurmlink dev-cluster up --accounting`; slurmdbd finds it beside slurm.conf.",
        "AuthType=auth/munge",
        f"AuthInfo=socket={munge_socket}",
        # slurmrestd's /slurmdb/ requests carry the user's JWT to slurmdbd
        "AuthAltTypes=auth/jwt",
        f"AuthAltParameters=jwt_key={jwt_key}",
        f"DbdHost={host}",
        "DbdAddr=127.0.0.1",
        f"DbdPort={dbd_port}",
        "CommunicationParameters=NoInAddrAny",
        "SlurmUser=slurm",
        "DebugLevel=info",
        f"PidFile={pid_file}",
        "StorageType=accounting_storage/mysql",
        "StorageHost=127.0.0.1",
        f"StoragePort={db_port}",
        f"StorageUser={DB_USER}",
        f"StoragePass={password}",
        f"StorageLoc={DATABASE}",
    ]
    if plugin_dir:
        lines.append(f"PluginDir={plugin_dir}")
    return "\n".join(lines) + "\n"


def slurm_conf_lines(*, dbd_port: int, munge_socket: Path) -> list[str]:
    """What slurm.conf says instead of accounting_storage/none."""
    return [
        "AccountingStorageType=accounting_storage/slurmdbd",
        "AccountingStorageHost=127.0.0.1",
        f"AccountingStoragePort={dbd_port}",
        f"AccountingStoragePass={munge_socket}",  # 22.05 finds munge's socket for slurmdbd only here
        # Jobs need an association (user, account, cluster), as on most sites.
        "AccountingStorageEnforce=associations",
        # slurmlink's comment (namespace/name) kept in the database: what recovers a pod from accounting
        "AccountingStoreFlags=job_comment",
    ]


def association_commands(cluster: str, accounts: Mapping[str, tuple[str, ...]]) -> list[list[str]]:
    """sacctmgr arguments that register the cluster and each account with its users (idempotent with -i:
    what exists already is left as it is). A user's default account is the first that lists them."""
    commands = [["-i", "add", "cluster", cluster]]
    seen: set[str] = set()
    for account, users in accounts.items():
        commands.append(["-i", "add", "account", account, f"Cluster={cluster}",
                         f"Description={account}", "Organization=slurmlink"])
        for first, group in ((True, [u for u in users if u not in seen]), (False, [u for u in users if u in seen])):
            if group:
                commands.append(["-i", "add", "user", ",".join(group), f"Account={account}", f"Cluster={cluster}",
                                 *([f"DefaultAccount={account}"] if first else [])])
        seen.update(users)
    return commands


def default_accounts(users: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Every user in DEFAULT_ACCOUNT; the VO accounts as VO_ACCOUNTS says."""
    alpha, beta = VO_ACCOUNTS
    return {DEFAULT_ACCOUNT: users, alpha: users[:2], beta: users[:1]}
