"""A real single-node SLURM on this machine: munged, slurmctld, slurmd and slurmrestd run as background
daemons under one state directory (config, keys, logs, pid records, spool), without systemd.

The machine's own SLURM (22.05 on Debian 12) by default; another release (24.11) from a Debian root
filesystem built once by scripts/build-slurm-root.sh (see rootfs.py). Both can run side by side on
different ports and state directories.

Needs root: it creates users, chowns files and starts slurmd as root.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import httpx

from slurmlink.core.errors import SlurmlinkError
from slurmlink.devcluster import accounting as acct
from slurmlink.devcluster import rootfs

DAEMONS = ("munged", "slurmctld", "slurmd", "slurmrestd")  # start order; stopped in reverse
SLURM_DAEMONS = DAEMONS[1:]
ACCOUNTING_DAEMONS = ("mariadbd", "slurmdbd")  # with accounting, after munged and before slurmctld
ALL_DAEMONS = (DAEMONS[0], *ACCOUNTING_DAEMONS, *SLURM_DAEMONS)
HOST_RELEASE = "22.05"  # the machine's own SLURM (Debian 12)
# The REST API versions each release's slurmrestd serves here, newest first.
REST_VERSIONS_OF = {HOST_RELEASE: ("v0.0.38", "v0.0.37", "v0.0.36"), "24.11": ("v0.0.42", "v0.0.41", "v0.0.40")}
REST_VERSIONS = REST_VERSIONS_OF[HOST_RELEASE]
DEFAULT_STATE_DIR = Path("/var/lib/slurmlink/dev-cluster")
PORT_OFFSET = {HOST_RELEASE: 0, "24.11": 10}  # each release's default cluster has its own ports: side by side
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
POLL = 0.05  # seconds between checks while waiting on a condition
BIND_RETRY_SECONDS = 30.0  # how long a slurmrestd start is tried again while its port is still taken
LOG_KEEP_BYTES = 20 * 1024 * 1024  # a daemon log past this moves to .1 at the next start

# Popen objects of the daemons this process started, so that their exit is reaped (no zombies that
# look alive) and Python does not warn about dropping a running child.
_children: dict[int, subprocess.Popen[bytes]] = {}


class DevClusterError(SlurmlinkError, RuntimeError):
    """Starting or stopping the cluster failed; `logs` holds the tail of the relevant daemon logs."""

    def __init__(self, message: str, logs: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.logs = logs or {}


def hs256_jwt(claims: dict[str, object], key: bytes) -> str:
    """A compact HS256 JWT, as slurmctld's auth/jwt expects (claims `sun`, `iat`, `exp`)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def part(obj: dict[str, object]) -> str:
        return b64(json.dumps(obj, separators=(",", ":")).encode())

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


class DevCluster:
    slurm_user = "slurm"
    munge_user = "munge"
    rest_user = "slurmrest"  # slurmrestd refuses root and the SlurmUser
    users: tuple[str, ...] = ("sltest1", "sltest2", "sltest3")
    partition = "debug"  # the default partition
    second_partition = "batch"  # the same node, for per-VO partitions (site policy)
    cluster_name = "slurmlink"  # ClusterName, and the cluster's name in accounting

    def __init__(
        self,
        state_dir: Path = Path("/var/lib/slurmlink/dev-cluster"),
        *,
        cpus: int = 16,
        rest_port: int = 6820,
        ctld_port: int = 6817,
        slurmd_port: int = 6818,
        node_name: str = "node1",
        timeout: float = 60.0,
        slurm: str | None = None,
        rest_versions: Sequence[str] | None = None,
        accounting: bool | None = None,
        dbd_port: int = 6819,
        db_port: int = 6816,
        min_job_age: int = 900,
        accounts: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        state_dir = Path(state_dir).absolute()
        slurm = slurm or _release_of(state_dir)  # a cluster that ran keeps its release (down, status)
        if slurm not in REST_VERSIONS_OF:
            raise DevClusterError(f"SLURM {slurm} is not one the dev cluster runs ({', '.join(REST_VERSIONS_OF)})")
        self.slurm = slurm
        try:
            self.root = None if slurm == HOST_RELEASE else rootfs.find_root(slurm)
        except rootfs.RootMissing as exc:
            raise DevClusterError(str(exc)) from None
        # slurmrestd serves these (a subset of the release's, e.g. to play a site that offers fewer)
        self.rest_versions = tuple(rest_versions or REST_VERSIONS_OF[slurm])
        self.state_dir = Path(state_dir).absolute()
        self.cpus = cpus
        self.rest_port = rest_port
        self.ctld_port = ctld_port
        self.slurmd_port = slurmd_port
        self.node_name = node_name
        self.timeout = timeout  # deadline for each wait in up()/down()
        # Accounting (slurmdbd and its MariaDB): None keeps what the state directory last ran with.
        self.accounting = _accounting_of(self.state_dir) if accounting is None else accounting
        self.dbd_port = dbd_port
        self.db_port = db_port
        self.min_job_age = min_job_age  # seconds slurmctld keeps a finished job (then only accounting has it)
        # account -> its users, each an association on this cluster (with accounting)
        self.accounts = dict(accounts or acct.default_accounts(self.users))

    # ---- layout -------------------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.state_dir / "etc" / "slurm.conf"

    @property
    def jwt_key_path(self) -> Path:
        return self.state_dir / "etc" / "jwt_hs256.key"

    @property
    def munge_dir(self) -> Path:
        return self.state_dir / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def jobcomp_path(self) -> Path:
        return self.log_dir / "jobcomp.txt"

    @property
    def dbd_conf_path(self) -> Path:
        return self.state_dir / "etc" / "slurmdbd.conf"  # slurmdbd has no -f: it looks beside SLURM_CONF

    @property
    def mariadb_dir(self) -> Path:
        return self.state_dir / "mariadb"

    @property
    def mariadb_socket(self) -> Path:
        return self.mariadb_dir / "mariadb.sock"

    @property
    def daemons(self) -> tuple[str, ...]:
        """This cluster's daemons in start order."""
        return ALL_DAEMONS if self.accounting else DAEMONS

    @property
    def job_root(self) -> Path:
        return self.state_dir / "jobs"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def bin_dir(self) -> Path | None:
        """Where this cluster's client commands are when they are not the machine's own (else None)."""
        return self.state_dir / "bin" if self.root is not None else None

    @property
    def env(self) -> dict[str, str]:
        """Environment to add for SLURM commands (sbatch, squeue, ...) aimed at this cluster."""
        env = {"SLURM_CONF": str(self.conf_path)}
        if self.bin_dir is not None:
            env["PATH"] = f"{self.bin_dir}:{os.environ.get('PATH') or SYSTEM_PATH}"
        return env

    def log_path(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    def _open_log(self, daemon: str) -> BinaryIO:
        """The daemon's log, appended to with a line per start (a post-mortem wants what came before a restart);
        the log of earlier starts moves to `.1` once it passes LOG_KEEP_BYTES."""
        path = self.log_path(daemon)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > LOG_KEEP_BYTES:
                path.replace(path.with_name(path.name + ".1"))
        log = open(path, "ab")  # noqa: SIM115 (the caller closes it)
        log.write(f"=== {daemon} started {datetime.now(UTC).isoformat(timespec='seconds')} ===\n".encode())
        log.flush()
        return log

    def log_tail(self, daemon: str, lines: int = 30) -> str:
        try:
            text = self.log_path(daemon).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _pid_file(self, daemon: str) -> Path:
        return self.state_dir / "run" / f"{daemon}.pid"

    # ---- status -------------------------------------------------------------------------------------

    def status(self) -> dict[str, int | None]:
        """Daemon name -> PID if that daemon of this cluster is alive, else None."""
        return {name: self._alive_pid(name) for name in self.daemons}

    def _alive_pid(self, daemon: str) -> int | None:
        try:
            pid = int(self._pid_file(daemon).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_alive(pid, daemon, self._identity_arg(daemon)) else None

    def _identity_arg(self, daemon: str) -> str:
        # An argument only this cluster's daemon has, so a reused PID is not taken for ours.
        if daemon == "munged":
            return f"--socket={self.munge_socket}"
        if daemon == "mariadbd":
            return f"--datadir={self.mariadb_dir / 'data'}"
        if daemon == "slurmdbd":  # no config argument: its environment names the config
            return f"SLURM_CONF={self.conf_path}"
        return str(self.conf_path)

    # ---- up -----------------------------------------------------------------------------------------

    def up(self) -> None:
        """Start whatever is not running and wait until jobs can run and slurmrestd answers."""
        _require_root()
        self._prepare_ancestors()
        with self._lock():
            self.ensure_users()
            fresh_keys = self._prepare_dirs_and_keys()
            conf_changed = self._write_conf()
            running = self.status()
            if fresh_keys:
                self._stop(ALL_DAEMONS, running)
            elif conf_changed:
                self._stop(("slurmdbd", *SLURM_DAEMONS), running)
            self._start_missing()

    def restart_rest(self, versions: Sequence[str] | None = None) -> None:
        """Restart slurmrestd serving `versions` (some of the release's; default all), as a site's SLURM
        upgrade or downgrade would change what it offers under running clients."""
        _require_root()
        with self._lock():
            pid = self._alive_pid("slurmrestd")
            if pid is not None:
                self._terminate("slurmrestd", pid)
                self._pid_file("slurmrestd").unlink(missing_ok=True)
            self.rest_versions = tuple(versions or REST_VERSIONS_OF[self.slurm])
            self._start_missing()

    # ---- failures, for tests of how slurmlink lives through them --------------------------------------

    def kill(self, daemon: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to one daemon of this cluster (kill -9 by default) and wait until it is gone. What it
        leaves behind stays (slurmd's job steps, slurmctld's state files), as after a crash."""
        pid = self._alive_pid(daemon)
        if pid is None:
            return
        os.kill(pid, sig)
        identity = self._identity_arg(daemon)
        if not _wait_for(lambda: not _is_alive(pid, daemon, identity), self.timeout):
            raise DevClusterError(f"{daemon} (pid {pid}) outlived signal {sig}", {daemon: self.log_tail(daemon)})

    def start(self, daemon: str) -> None:
        """Start one daemon again (after `kill`) and wait until it answers; unlike up(), whatever the
        node's state (a node with a failed slurmd stays down until `resume_node`)."""
        _require_root()
        ready = {"munged": self._munge_up, "slurmctld": self._ctld_up, "slurmd": lambda: True,
                 "slurmrestd": self._rest_up}
        with self._lock():
            if self._alive_pid(daemon) is None:
                self._spawn(daemon, *self._daemon_command(daemon))
            self._wait_until(f"{daemon} to answer", ready[daemon], [daemon])

    def resume_node(self) -> None:
        """What an administrator does once a failed node is back: `scontrol update state=resume`."""
        _run(["scontrol", "update", f"nodename={self.node_name}", "state=resume"], env=self.env, check=False)
        self._wait_until(f"node {self.node_name} to be back", self._node_ready, SLURM_DAEMONS[:2])

    def _daemon_command(self, daemon: str) -> tuple[list[str], str | None, dict[str, str] | None]:
        """(argv, user, extra environment) of one daemon."""
        if daemon == "munged":
            return self._munged_argv(), self.munge_user, None
        if daemon == "slurmctld":
            return ["slurmctld", "-D", "-f", str(self.conf_path)], self.slurm_user, None
        if daemon == "slurmd":
            return ["slurmd", "-D", "-N", self.node_name, "-f", str(self.conf_path)], None, None
        argv = ["slurmrestd", "-f", str(self.conf_path), "-a", "rest_auth/jwt", *self._rest_plugins(),
                f"127.0.0.1:{self.rest_port}"]
        return argv, self.rest_user, {"SLURM_JWT": "daemon"}

    def _start_missing(self) -> None:
        if self._alive_pid("munged") is None:
            self._spawn("munged", *self._daemon_command("munged"))
        self._wait_until("munged to answer", self._munge_up, ["munged"])
        if self.accounting:
            self._start_accounting()

        if self._alive_pid("slurmctld") is None:
            self._spawn("slurmctld", *self._daemon_command("slurmctld"))
        self._wait_until("slurmctld to answer", self._ctld_up, ["munged", "slurmctld"])

        if self._alive_pid("slurmd") is None:
            self._spawn("slurmd", *self._daemon_command("slurmd"))
        self._wait_until(f"node {self.node_name} to be idle", self._node_ready, SLURM_DAEMONS[:2])

        if self._alive_pid("slurmrestd") is None:
            self._spawn_rest()
        self._wait_until("slurmrestd to answer a ping", self._rest_up, self.daemons)

    def _spawn_rest(self) -> None:
        """Start slurmrestd. Its port can stay taken for a moment after a predecessor is gone (restart_rest; a CI
        run saw "Unable to bind socket: Address already in use"): then it is started again, for up to
        BIND_RETRY_SECONDS."""
        deadline = time.monotonic() + BIND_RETRY_SECONDS
        while True:
            self._spawn("slurmrestd", *self._daemon_command("slurmrestd"))
            _wait_for(lambda: self._alive_pid("slurmrestd") is None or self._rest_up(), 2.0)
            if self._alive_pid("slurmrestd") is not None or time.monotonic() > deadline \
                    or "Address already in use" not in self.log_tail("slurmrestd", 1):
                return  # up, or the caller's wait says why not
            time.sleep(0.5)

    def _start_accounting(self) -> None:
        """MariaDB (its tables made once), slurmdbd's login there, slurmdbd, then the associations."""
        data = self.mariadb_dir / "data"
        if self._alive_pid("mariadbd") is None:
            if not (data / "mysql").is_dir():
                _run(acct.install_db_argv(data), timeout=120)
            argv = acct.mariadbd_argv(data, self.mariadb_socket, self.db_port, self.mariadb_dir / "mariadbd.pid")
            self._spawn("mariadbd", argv, acct.MYSQL_USER, from_host=True)
        self._wait_until("MariaDB to answer", self._mariadb_up, ["mariadbd"])
        _run(acct.client_argv(self.mariadb_socket, acct.grant_sql(self._db_password())))

        if self._alive_pid("slurmdbd") is None:
            self._spawn("slurmdbd", ["slurmdbd", "-D"], self.slurm_user)
        self._wait_until("slurmdbd to answer", self._dbd_up, ["mariadbd", "slurmdbd"])
        for args in acct.association_commands(self.cluster_name, self.accounts):
            # -i: what exists is left alone (sacctmgr then says "Nothing new added" and may exit 1)
            _run(self._sacctmgr(*args), env=self.env, check=False)
        missing = {(u, a) for a, users in self.accounts.items() for u in users} - set(self.associations())
        if missing:
            raise DevClusterError(f"sacctmgr did not create the associations {sorted(missing)}",
                                  {"slurmdbd": self.log_tail("slurmdbd")})

    def associations(self) -> list[tuple[str, str]]:
        """(user, account) of every user association on this cluster (with accounting)."""
        argv = self._sacctmgr("-n", "-P", "show", "associations", f"cluster={self.cluster_name}", "format=user,account")
        out = _run(argv, env=self.env) or ""
        return [(u, a) for u, _, a in (line.partition("|") for line in out.splitlines()) if u]

    def _sacctmgr(self, *args: str) -> list[str]:
        return [str(self.bin_dir / "sacctmgr") if self.bin_dir is not None else "sacctmgr", *args]

    def _db_password(self) -> str:
        return acct.db_password(self.state_dir / "etc" / "mariadb.pass")

    def _rest_plugins(self) -> list[str]:
        """An explicit plugin list: the default set holds the slurmdbd plugins, fatal without slurmdbd."""
        if self.slurm == HOST_RELEASE:
            plugins = [f"openapi/{v}" for v in self.rest_versions]
            if self.accounting:
                plugins += [f"openapi/db{v}" for v in self.rest_versions]
            return ["-s", ",".join(plugins)]
        # From 23.11 one openapi plugin serves every version its data parsers offer.
        plugins = ["openapi/slurmctld", *(["openapi/slurmdbd"] if self.accounting else [])]
        return ["-s", ",".join(plugins), "-d", ",".join(f"data_parser/{v}" for v in self.rest_versions)]

    def _munged_argv(self) -> list[str]:
        d = self.munge_dir
        return [
            "munged",
            "--foreground",
            f"--key-file={d / 'munge.key'}",
            f"--socket={self.munge_socket}",
            f"--pid-file={d / 'munged.pid'}",
            f"--seed-file={d / 'munged.seed'}",
            "--log-file=/dev/null",  # it logs to stderr in the foreground, which goes to our log file
        ]

    def ensure_users(self) -> None:
        """The SLURM, munge, slurmrestd and test users, created when missing (root only)."""
        if not _user_exists(self.rest_user):
            _run(["useradd", "--system", "--user-group", "--shell", "/usr/sbin/nologin", self.rest_user])
        for user in self.users:
            if not _user_exists(user):
                _run(["useradd", "--create-home", "--user-group", "--shell", "/bin/bash", user])
            if pwd.getpwnam(user).pw_uid < 1000:
                raise DevClusterError(f"test user {user} has uid < 1000; remove it or pick other users")
        for user in (self.slurm_user, self.munge_user):
            if not _user_exists(user):
                raise DevClusterError(f"user {user!r} is missing: are the SLURM packages installed?")

    def _prepare_ancestors(self) -> None:
        """Every directory above the state dir must let slurm, munge and the job users through."""
        for ancestor in reversed(self.state_dir.parents):
            if not ancestor.exists():
                ancestor.mkdir(mode=0o755)
                ancestor.chmod(0o755)  # whatever the umask
            elif not ancestor.stat().st_mode & stat.S_IXOTH:
                raise DevClusterError(
                    f"{ancestor} is not traversable by other users (slurm, munge, job users); "
                    f"`chmod o+x {ancestor}` or choose another state directory"
                )

    def _prepare_dirs_and_keys(self) -> bool:
        """Create the layout with the owners each daemon needs; True if a key had to be made."""
        layout = {
            self.state_dir: ("root", 0o755),
            self.state_dir / "etc": ("root", 0o755),
            self.state_dir / "run": ("root", 0o755),
            self.munge_dir: (self.munge_user, 0o755),  # the socket inside must be reachable by all
            self.log_dir: (self.slurm_user, 0o755),  # slurmctld writes the jobcomp file here
            self.state_dir / "ctld": (self.slurm_user, 0o700),
            self.state_dir / "slurmd": ("root", 0o755),
            self.job_root: ("root", 0o711),  # per-pod dirs below; users must not list each other's
        }
        if self.accounting:
            missing = acct.missing_packages(release_has_slurmdbd=self.root is not None, path=SYSTEM_PATH)
            if missing:
                raise DevClusterError(missing)
            layout[self.mariadb_dir] = (acct.MYSQL_USER, 0o755)  # its socket inside is for root only (auth)
            layout[self.state_dir / "dbd"] = (self.slurm_user, 0o755)
        for path, (owner, mode) in layout.items():
            path.mkdir(exist_ok=True)
            _chown(path, owner)
            path.chmod(mode)
        made = _ensure_key(self.munge_dir / "munge.key", 1024, self.munge_user, 0o400)
        (self.state_dir / "etc" / "release").write_text(f"{self.slurm}\n")
        if self.root is not None and self.bin_dir is not None:
            rootfs.link_back(self.root)
            rootfs.write_client_wrappers(self.root, self.bin_dir)
            # No cgroup filesystem to delegate here: 24.11's slurmd dies without this, whatever TaskPlugin says.
            (self.state_dir / "etc" / "cgroup.conf").write_text("CgroupPlugin=disabled\n")
        return _ensure_key(self.jwt_key_path, 32, self.slurm_user, 0o600) or made

    def _write_conf(self) -> bool:
        """Write slurm.conf (and slurmdbd.conf); True if either differs from what was there."""
        marker = self.state_dir / "etc" / "accounting"
        if not self.accounting:
            marker.unlink(missing_ok=True)
            return _write_file(self.conf_path, self._render_conf(), 0o644, "root")
        marker.write_text(f"{self.dbd_port} {self.db_port}\n")
        plugin_dir = f"{self.root}/usr/lib/x86_64-linux-gnu/slurm-wlm" if self.root is not None else None
        dbd = acct.render_slurmdbd_conf(
            host=_short_hostname(), dbd_port=self.dbd_port, db_port=self.db_port, password=self._db_password(),
            munge_socket=self.munge_socket, jwt_key=self.jwt_key_path,
            pid_file=self.state_dir / "dbd" / "slurmdbd.pid", plugin_dir=plugin_dir)
        dbd_changed = _write_file(self.dbd_conf_path, dbd, 0o600, self.slurm_user)  # slurmdbd insists
        return _write_file(self.conf_path, self._render_conf(), 0o644, "root") or dbd_changed

    def _render_conf(self) -> str:
        text = self._render_host_conf()
        if self.root is None:
            return text
        # 24.11 refuses these "none" plugins (unset means none) and loads plugins from the root.
        refused = ("JobAcctGatherType=jobacct_gather/none", "SwitchType=switch/none",
                   "AccountingStorageType=accounting_storage/none")
        lines = [line for line in text.splitlines() if line not in refused]
        lines.insert(2, f"PluginDir={self.root}/usr/lib/x86_64-linux-gnu/slurm-wlm")
        return "\n".join(lines) + "\n"

    def _render_host_conf(self) -> str:
        s = self.state_dir
        host = _short_hostname()  # slurmctld only runs where its host name matches
        storage = (acct.slurm_conf_lines(dbd_port=self.dbd_port, munge_socket=self.munge_socket)
                   if self.accounting else ["AccountingStorageType=accounting_storage/none"])
        storage_text = "\n".join(storage)
        return f"""\
# Written by `slurmlink dev-cluster up`; rewritten (and the daemons restarted) when it changes.
ClusterName={self.cluster_name}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser={self.slurm_user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long before it runs again (SLURM's default: 120 s)
AuthInfo=socket={self.munge_socket},cred_expire=20
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key={self.jwt_key_path}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation={s / "ctld"}
SlurmctldPidFile={s / "ctld" / "slurmctld.pid"}
SlurmdSpoolDir={s / "slurmd"}
SlurmdPidFile={s / "slurmd" / "slurmd.pid"}
# Logs go to stderr (-D), which up() sends to {self.log_dir}; nothing to syslog.
SlurmctldDebug=info
SlurmctldSyslogDebug=quiet
SlurmdDebug=info
SlurmdSyslogDebug=quiet
MailProg=/bin/true
# No cgroup delegation here.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Without slurmdbd, finished jobs stay in squeue for MinJobAge (15 minutes by default; then slurmlink reads
# the job's own exit records), and jobcomp keeps a line per job for good. Longer would fill MaxJobCount
# during benchmarks and make every squeue slower. With slurmdbd, sacct and /slurmdb/ know them for good.
{storage_text}
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp_path}
MinJobAge={self.min_job_age}
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=200
ReturnToService=2
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=10
# More CPUs than the machine has, so that many small jobs run at once.
SlurmdParameters=config_overrides
NodeName={self.node_name} NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={self.cpus} \
RealMemory={_real_memory_mb()} State=UNKNOWN
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName={self.second_partition} Nodes=ALL Default=NO MaxTime=INFINITE State=UP
"""

    # ---- down ---------------------------------------------------------------------------------------

    def down(self) -> None:
        """Cancel active jobs (so no job process outlives the cluster), then stop the daemons."""
        _require_root()
        if not self.state_dir.exists():
            return
        with self._lock():
            running = self.status()
            if running["slurmctld"] and running["slurmd"]:
                self._cancel_active_jobs()
            self._stop(ALL_DAEMONS, {**running, **{n: self._alive_pid(n) for n in ACCOUNTING_DAEMONS}})

    def _active_jobs(self) -> list[str]:
        out = _run(["squeue", "-h", "-o", "%A"], env=self.env, check=False)
        return out.split() if out is not None else []

    def _cancel_active_jobs(self) -> None:
        jobs = self._active_jobs()
        if jobs:
            _run(["scancel", *jobs], env=self.env, check=False)
            self._wait_until("active jobs to end", lambda: not self._active_jobs(), SLURM_DAEMONS[:2])

    def _stop(self, daemons: Sequence[str], running: dict[str, int | None]) -> None:
        for name in reversed(ALL_DAEMONS):  # dependants first
            pid = running.get(name)
            if name in daemons and pid is not None:
                self._terminate(name, pid)
                self._pid_file(name).unlink(missing_ok=True)

    def _terminate(self, name: str, pid: int) -> None:
        """SIGTERM, wait; SIGKILL if it lingers; wait again."""
        identity = self._identity_arg(name)

        def gone() -> bool:
            return not _is_alive(pid, name, identity)

        for sig, grace in ((signal.SIGTERM, self.timeout / 4), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_for(gone, grace):
                return
        raise DevClusterError(f"{name} (pid {pid}) did not exit", {name: self.log_tail(name)})

    # ---- helpers ------------------------------------------------------------------------------------

    def token(self, user: str, lifespan: int = 600) -> str:
        """A JWT for `user` that slurmctld accepts (the SlurmUser's token may act for anyone)."""
        now = int(time.time())
        return hs256_jwt({"sun": user, "iat": now, "exp": now + lifespan}, self.jwt_key_path.read_bytes())

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two `up`s at once (two test sessions, a user and a test) must not start daemons twice.
        self.state_dir.mkdir(exist_ok=True)
        with open(self.state_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _spawn(self, name: str, argv: list[str], user: str | None, env: dict[str, str] | None = None,
               *, from_host: bool = False) -> None:
        """Start a daemon in the foreground of its own session, output to its log, PID recorded
        (from the release's root unless `from_host`: MariaDB is always the machine's)."""
        full_env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", **self.env, **(env or {})}
        uid = gid = groups = None
        if user is not None:
            pw = pwd.getpwnam(user)
            uid, gid, groups = pw.pw_uid, pw.pw_gid, os.getgrouplist(user, pw.pw_gid)
            full_env["HOME"] = pw.pw_dir
        if self.root is not None and not from_host:  # from the root, as root until chroot takes the user on
            binds = [self.state_dir, Path("/home"), Path("/tmp")]
            argv = rootfs.daemon_argv(self.root, argv, binds, uid or 0, gid or 0, groups or [])
            uid = gid = groups = None
        with self._open_log(name) as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=self.state_dir,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        _children[proc.pid] = proc
        self._pid_file(name).write_text(f"{proc.pid}\n")
        if self.root is not None and not from_host:  # until unshare, sh and chroot exec, the PID is not `name`
            _wait_for(lambda: proc.poll() is not None or _is_alive(proc.pid, name, self._identity_arg(name)), 10.0)

    def _wait_until(self, what: str, check: Callable[[], bool], watch: Sequence[str]) -> None:
        """Poll `check` until true; fail early with its log if a daemon in `watch` dies meanwhile."""
        deadline = time.monotonic() + self.timeout
        while True:
            if check():
                return
            dead = [name for name in watch if self._alive_pid(name) is None]
            if dead:
                last = "; ".join(f"{n}: {self.log_tail(n, 1)}" for n in dead if self.log_tail(n, 1))
                raise DevClusterError(  # the last log line in the message: test runs show no more
                    f"{', '.join(dead)} exited while waiting for {what}" + (f" ({last})" if last else ""),
                    {n: self.log_tail(n) for n in dead},
                )
            if time.monotonic() > deadline:
                raise DevClusterError(
                    f"timed out after {self.timeout:.0f}s waiting for {what}",
                    {n: self.log_tail(n) for n in watch},
                )
            time.sleep(POLL)

    def _munge_up(self) -> bool:
        # A socket file alone may be left from a killed munged: ask for a credential.
        return _run(["munge", "-n", "-S", str(self.munge_socket)], check=False) is not None

    def _mariadb_up(self) -> bool:
        return _run(acct.client_argv(self.mariadb_socket, "SELECT 1"), check=False) is not None

    def _dbd_up(self) -> bool:
        return _run(self._sacctmgr("-n", "-P", "show", "clusters", "format=cluster"), env=self.env,
                    check=False) is not None

    def _ctld_up(self) -> bool:
        out = _run(["scontrol", "ping"], env=self.env, check=False)
        return out is not None and "is UP" in out

    def _node_ready(self) -> bool:
        out = _run(["sinfo", "-h", "-N", "-n", self.node_name, "-o", "%T"], env=self.env, check=False)
        # Left-over jobs from an earlier run may keep the node busy: that is ready too. One line per partition.
        states = set((out or "").split())
        return bool(states) and states <= {"idle", "mixed", "allocated"}

    def _rest_up(self) -> bool:
        headers = {"X-SLURM-USER-NAME": self.slurm_user, "X-SLURM-USER-TOKEN": self.token(self.slurm_user)}
        try:
            resp = httpx.get(f"{self.rest_url}/slurm/{self.rest_versions[0]}/ping/", headers=headers, timeout=5)
            body = resp.json()
        except (httpx.HTTPError, ValueError):
            return False
        if resp.status_code != 200 or body.get("errors"):
            return False
        # v0.0.38 says "ping": "UP"; v0.0.40 and later "pinged": "UP"
        return any("UP" in (p.get("ping"), p.get("pinged")) for p in body.get("pings") or [])


# ---- module helpers ---------------------------------------------------------------------------------


def _require_root() -> None:
    if os.geteuid() != 0:
        raise DevClusterError("the dev cluster needs root (it creates users and starts slurmd as root)")


def _is_alive(pid: int, name: str, identity_arg: str) -> bool:
    """True if `pid` is a live (not zombie) `name` process whose command line (or environment: slurmdbd
    takes no config argument) has `identity_arg`."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    if state == "Z" or Path(argv[0].decode()).name != name:
        return False
    if identity_arg.encode() in argv:
        return True
    try:
        return identity_arg.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


def _run(argv: list[str], *, env: dict[str, str] | None = None, check: bool = True,
         timeout: float = 30) -> str | None:
    """Run a short command; its stdout, or None if it failed and `check` is off."""
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=timeout)  # noqa: S603
    except subprocess.TimeoutExpired as exc:
        if check:
            raise DevClusterError(f"`{' '.join(argv)}` timed out") from exc
        return None
    if proc.returncode != 0:
        if check:
            raise DevClusterError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return None
    return proc.stdout


def _write_file(path: Path, text: str, mode: int, owner: str) -> bool:
    """Replace `path` with `text` (owner, mode) if it differs; True if it did."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=mode)
    _chown(tmp, owner)
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def _short_hostname() -> str:
    return socket.gethostname().split(".")[0]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _chown(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _ensure_key(path: Path, size: int, owner: str, mode: int) -> bool:
    """Create a random key file if missing (True), and fix its owner and mode either way."""
    made = not path.exists()
    if made:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(size))
    _chown(path, owner)
    path.chmod(mode)
    return made


def default_state_dir(slurm: str = HOST_RELEASE) -> Path:
    return DEFAULT_STATE_DIR if slurm == HOST_RELEASE else DEFAULT_STATE_DIR.with_name(f"dev-cluster-{slurm}")


def default_ports(slurm: str = HOST_RELEASE) -> dict[str, int]:
    """rest_port, ctld_port, slurmd_port, dbd_port and db_port of a release's default cluster
    (22.05: 6820, 6817, 6818, 6819, 6816)."""
    offset = PORT_OFFSET[slurm]
    return {"rest_port": 6820 + offset, "ctld_port": 6817 + offset, "slurmd_port": 6818 + offset,
            "dbd_port": 6819 + offset, "db_port": 6816 + offset}


def default_cluster(slurm: str = HOST_RELEASE) -> DevCluster:
    """The release's default dev cluster (what `slurmlink dev-cluster up --slurm RELEASE` starts)."""
    ports = default_ports(slurm)
    return DevCluster(default_state_dir(slurm), rest_port=ports["rest_port"], ctld_port=ports["ctld_port"],
                      slurmd_port=ports["slurmd_port"], dbd_port=ports["dbd_port"], db_port=ports["db_port"],
                      slurm=slurm)


def _release_of(state_dir: Path) -> str:
    """The SLURM release a cluster in `state_dir` was brought up with (the machine's own if none yet)."""
    try:
        return (state_dir / "etc" / "release").read_text().strip() or HOST_RELEASE
    except FileNotFoundError:
        return HOST_RELEASE


def _accounting_of(state_dir: Path) -> bool:
    """Whether a cluster in `state_dir` last came up with accounting."""
    return (state_dir / "etc" / "accounting").exists()


def _real_memory_mb() -> int:
    """The machine's memory as slurmd sees it, less headroom for the OS and the daemons."""
    out = _run(["slurmd", "-C"]) or ""
    match = re.search(r"RealMemory=(\d+)", out)
    if not match:
        raise DevClusterError(f"cannot read RealMemory from `slurmd -C`: {out.strip()!r}")
    real = int(match.group(1))
    return max(real - 1024, real // 2)
