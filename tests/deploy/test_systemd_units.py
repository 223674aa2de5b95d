"""The systemd units in deploy/systemd/: they parse, they score, and what they grant is what the code needs.

PID 1 on these machines is not systemd, so no unit can be started here. What is checked instead:
- `systemd-analyze verify` prints nothing for each unit (it exits 0 even on a parse error: any output fails);
- `systemd-analyze security --offline=true` scores each service at or below its THRESHOLDS entry;
- sysusers.d and tmpfiles.d make the user and the directories with the modes the units expect (in a scratch root);
- the API's and the proxy's own code (tests/deploy/capability_probe.py) runs under `setpriv` with exactly the
  capability bounding set, ambient set and no_new_privs of the unit, and fails with any one capability less;
- `slurmlink api` starts and answers under MemoryDenyWriteExecute (the kernel's PR_SET_MDWE) with those limits.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from slurmlink.devcluster import DevCluster
from slurmlink.proxy.slurm_token import SlurmTokenSource
from standins.checkin import CheckinStandin
from tests.deploy.capability_probe import sleepers
from tests.harness.pods import Client, make_pod
from tests.harness.ports import free_port
from tests.harness.services import api_config
from tests.harness.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO / "deploy" / "systemd"
INSTALLED_BINARY = "/opt/slurmlink/bin/slurmlink"  # the units' ExecStart (docs/deploy.md)
UNITS = sorted(p.name for p in UNITS_DIR.iterdir() if p.suffix in (".service", ".timer"))
# `systemd-analyze security` exposure, 0-100 (lower is safer; it prints it divided by 10). Measured on
# systemd 252: api 25 (root with six capabilities, network), proxy 15, slurm-token 19.
THRESHOLDS = {"slurmlink-api.service": 30, "slurmlink-proxy.service": 20, "slurmlink-slurm-token.service": 20}
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1

needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (capabilities, runuser, test users)")


def service_settings(unit: str) -> dict[str, list[str]]:
    """The [Service] section's assignments (continuation lines joined), each key with all its values."""
    settings: dict[str, list[str]] = {}
    section = ""
    logical = ""
    for raw in (UNITS_DIR / unit).read_text().splitlines():
        line = logical + raw.strip()
        if line.endswith("\\"):
            logical = line[:-1] + " "
            continue
        logical = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def capabilities(unit: str, key: str) -> list[str]:
    """`cap_setuid`-style names of the unit's CapabilityBoundingSet= or AmbientCapabilities=."""
    return [cap.lower() for value in service_settings(unit).get(key, []) for cap in value.split()]


def verifiable_copies(tmp_path: Path) -> Path:
    """The units, with ExecStart pointing at this venv's slurmlink: verify wants the binary to exist."""
    venv_binary = str(Path(sys.executable).with_name("slurmlink"))
    for unit in UNITS:
        (tmp_path / unit).write_text((UNITS_DIR / unit).read_text().replace(INSTALLED_BINARY, venv_binary))
    return tmp_path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "--no-pager", *args], capture_output=True, text=True, timeout=120)


# ---- parsing and scoring ------------------------------------------------------------------------------


def test_the_units_are_all_there() -> None:
    assert UNITS == ["slurmlink-api.service", "slurmlink-proxy.service", "slurmlink-slurm-token.service",
                     "slurmlink-slurm-token.timer"]


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_verify_prints_nothing(unit: str, tmp_path: Path) -> None:
    copies = verifiable_copies(tmp_path)
    result = analyze("verify", "--man=no", str(copies / unit))
    assert (result.stdout + result.stderr).strip() == "", result.stdout + result.stderr


@needs_systemd_analyze
def test_verify_would_show_a_broken_unit(tmp_path: Path) -> None:
    """The test above relies on verify printing what it ignores (it exits 0 all the same)."""
    copies = verifiable_copies(tmp_path)
    unit = copies / "slurmlink-proxy.service"
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHome=yess")
                    .replace("%d/jwt-key", "%Z/jwt-key"))
    result = analyze("verify", "--man=no", str(unit))
    assert result.returncode == 0
    assert "protect home value" in result.stderr and "Failed to resolve specifiers" in result.stderr, result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("unit", sorted(THRESHOLDS))
def test_security_exposure_is_at_most_the_threshold(unit: str, tmp_path: Path) -> None:
    copies = verifiable_copies(tmp_path)
    result = analyze("security", "--offline=true", f"--threshold={THRESHOLDS[unit]}", str(copies / unit))
    overall = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, f"{unit}: {overall} (threshold {THRESHOLDS[unit] / 10:g})"


def test_credentials_reach_the_config_through_the_credentials_directory() -> None:
    """Each LoadCredential= id is handed to the config as %d/<id> (or named in the YAML, as the unit says)."""
    for unit in ("slurmlink-api.service", "slurmlink-proxy.service"):
        settings = service_settings(unit)
        ids = [value.split(":", 1)[0] for value in settings.get("LoadCredential", [])]
        assert ids, unit
        environment = " ".join(settings.get("Environment", []))
        for credential in ids:
            assert f"=%d/{credential}" in environment, f"{unit}: credential {credential} is not passed on"
        assert all(name.startswith("SLURMLINK_") for name, _, _ in
                   (item.partition("=") for item in environment.split())), unit


# ---- users and directories ------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="no systemd-tmpfiles")
def test_sysusers_and_tmpfiles_make_what_the_units_expect(tmp_path: Path) -> None:
    for kind in ("sysusers.d", "tmpfiles.d"):
        target = tmp_path / "usr" / "lib" / kind
        target.mkdir(parents=True)
        shutil.copy(UNITS_DIR / kind / "slurmlink.conf", target)
    (tmp_path / "etc").mkdir()
    for command in (["systemd-sysusers", f"--root={tmp_path}"], ["systemd-tmpfiles", f"--root={tmp_path}", "--create"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    user = next(line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()
                if line.startswith("slurmlink:"))
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000 and user[6] == "/usr/sbin/nologin"  # a system account: never a mapping result
    proxy = service_settings("slurmlink-proxy.service")
    assert proxy["User"] == ["slurmlink"] and proxy["StateDirectory"] == ["slurmlink/proxy"]
    for path, owner, mode in (("var/lib/slurmlink/proxy", uid, proxy["StateDirectoryMode"][0]),
                              ("var/lib/slurmlink/api", 0,
                               service_settings("slurmlink-api.service")["StateDirectoryMode"][0]),
                              ("run/slurmlink", 0, "0755")):
        info = (tmp_path / path).stat()
        assert (info.st_uid, oct(info.st_mode & 0o7777)) == (owner, oct(int(mode, 8))), path
    assert (tmp_path / "var/lib/slurmlink/proxy").stat().st_gid == gid


# ---- the SlurmUser token refresh -------------------------------------------------------------------------


def token_refresh_script(run_dir: Path, group: str) -> list[str]:
    """slurmlink-slurm-token.service's ExecStart as systemd hands it to exec ($$ is a literal $; it uses no
    variables or specifiers), with the token's directory and group swapped for the test's."""
    (line,) = service_settings("slurmlink-slurm-token.service")["ExecStart"]
    assert "%" not in line and "/run/slurmlink/slurm.token" in line and "chgrp slurmlink " in line
    argv = shlex.split(line.replace("$$", "$"))
    return [arg.replace("/run/slurmlink/", f"{run_dir}/").replace("chgrp slurmlink ", f"chgrp {group} ")
            for arg in argv]


@needs_root
def test_the_token_refresh_replaces_the_token_atomically_and_keeps_it_on_failure(tmp_path: Path) -> None:
    """The refresh runs with a stand-in for `scontrol token` (it prints what SLURM's prints: SLURM_JWT=...);
    the proxy's own SlurmTokenSource reads the result."""
    run_dir, bin_dir = tmp_path / "run", tmp_path / "bin"
    run_dir.mkdir()
    bin_dir.mkdir()
    answer = tmp_path / "answer"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\n[ "$1 $2 $3" = "token username=slurm lifespan=3600" ] || exit 2\n'
                        f'[ -s {answer} ] || {{ echo "scontrol: error: no token" >&2; exit 1; }}\n'
                        f'printf "SLURM_JWT=%s\\n" "$(cat {answer})"\n')
    scontrol.chmod(0o755)
    argv = token_refresh_script(run_dir, "daemon")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    token = run_dir / "slurm.token"
    source = SlurmTokenSource(slurm_user="slurm", token_file=str(token))

    answer.write_text("first")
    assert subprocess.run(argv, env=env, timeout=30).returncode == 0
    info = token.stat()
    assert (oct(info.st_mode & 0o777), info.st_gid) == ("0o640", grp.getgrnam("daemon").gr_gid)
    assert source.token() == "first"

    answer.write_text("")  # scontrol fails: the old token stays, no half-written file is left
    assert subprocess.run(argv, env=env, timeout=30, capture_output=True).returncode != 0
    assert source.token() == "first" and sorted(p.name for p in run_dir.iterdir()) == ["slurm.token"]

    answer.write_text("second")
    assert subprocess.run(argv, env=env, timeout=30).returncode == 0
    assert token.stat().st_ino != info.st_ino  # renamed over, never rewritten in place
    assert source.token() == "second"
    assert sorted(p.name for p in run_dir.iterdir()) == ["slurm.token"]


# ---- capabilities, tried on the code they are for ---------------------------------------------------------


def setpriv(unit: str, drop: str | None = None, as_user: str | None = None) -> list[str]:
    """setpriv arguments that give a process what `unit` gives its service (less `drop`)."""
    bounding = [cap for cap in capabilities(unit, "CapabilityBoundingSet") if cap != drop]
    ambient = [cap for cap in capabilities(unit, "AmbientCapabilities") if cap != drop]
    argv = ["setpriv", "--bounding-set", ",".join(["-all", *(f"+{c.removeprefix('cap_')}" for c in bounding)])]
    if as_user is not None:
        argv += ["--reuid", as_user, "--regid", as_user, "--init-groups"]
    listed = ",".join(["-all", *(f"+{c.removeprefix('cap_')}" for c in ambient)])
    argv += ["--inh-caps", listed, "--ambient-caps", listed]
    if service_settings(unit).get("NoNewPrivileges") == ["yes"]:
        argv.append("--no-new-privs")
    return [*argv, "--"]


def probe(privileges: list[str], *args: str, trace: Path | None = None) -> dict[str, str]:
    tracer = ["strace", "-f", "-qq", "-o", str(trace)] if trace else []
    try:
        result = subprocess.run([*tracer, *privileges, sys.executable, "-m", "tests.deploy.capability_probe",
                                 *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        for pid in sleepers():  # a command that outlived a probe without CAP_KILL
            os.kill(pid, signal.SIGKILL)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture
def job_root() -> Iterator[Path]:
    """A job root as docs/proxy.md recommends it (root's, mode 1733), that the test users can reach (pytest's
    tmp_path is below a 0700 directory)."""
    base = Path(tempfile.mkdtemp(prefix="slurmlink-units-"))
    os.chmod(base, 0o711)  # noqa: S103 - the users traverse it, as they do a real job root's parent
    root = base / "jobs"
    root.mkdir()
    os.chmod(root, 0o1733)  # noqa: S103 - the recommended job root mode
    yield root
    shutil.rmtree(base)


API = "slurmlink-api.service"
PROXY = "slurmlink-proxy.service"


@needs_root
def test_the_api_unit_grants_what_the_cli_backend_uses(job_root: Path, test_users: tuple[str, ...]) -> None:
    """With strace present, also: every system call of that code and of runuser (PAM included) is one the
    unit's SystemCallFilter= allows."""
    assert service_settings(API)["User"] == ["root"]  # slurmlink acts for others only as uid 0
    trace = job_root.parent / "strace.out" if shutil.which("strace") else None
    results = probe(setpriv(API), "api", str(job_root), test_users[0], trace=trace)
    assert set(results.values()) == {"ok"}, results
    if trace:
        outside = traced_syscalls(trace, "tests.deploy.capability_probe") - allowed_syscalls(API)
        assert not outside, f"system calls the API's SystemCallFilter= refuses: {sorted(outside)}"


@needs_root
@pytest.mark.parametrize("capability", capabilities(API, "CapabilityBoundingSet"))
def test_the_api_needs_each_capability_it_is_given(capability: str, job_root: Path,
                                                   test_users: tuple[str, ...]) -> None:
    results = probe(setpriv(API, drop=capability), "api", str(job_root), test_users[0])
    assert {step for step, outcome in results.items() if outcome != "ok"}, f"works without {capability}"


@needs_root
def test_the_proxy_unit_reads_pod_directories_and_nothing_more(job_root: Path,
                                                               test_users: tuple[str, ...]) -> None:
    """The proxy's own user (the test's stand-in for `slurmlink`: a second test user) reads the first user's
    0700 pod directory with CAP_DAC_READ_SEARCH, and cannot without it."""
    assert capabilities(PROXY, "CapabilityBoundingSet") == ["cap_dac_read_search"]
    assert capabilities(PROXY, "AmbientCapabilities") == ["cap_dac_read_search"]
    owner, proxy_user = test_users[0], test_users[1]
    readable = subprocess.run(["runuser", "-u", proxy_user, "--", sys.executable, "-c", "import tests.deploy"],
                              cwd=REPO, capture_output=True, check=False)
    if readable.returncode != 0:
        pytest.skip(f"{proxy_user} cannot run this checkout's Python (a parent directory closed to others?)")
    assert set(probe([], "api", str(job_root), owner).values()) == {"ok"}  # a pod directory of `owner`
    workdir = str(job_root / "default-probe")
    assert set(probe(setpriv(PROXY, as_user=proxy_user), "proxy", str(job_root), workdir).values()) == {"ok"}
    without = probe(setpriv(PROXY, drop="cap_dac_read_search", as_user=proxy_user), "proxy", str(job_root), workdir)
    assert "Permission denied" in without["read_status"], without


def kernel_has_mdwe() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0)


def syscall_groups() -> dict[str, list[str]]:
    """systemd-analyze's system call groups ("@system-service": ["@basic-io", ..., "capget", ...])."""
    groups: dict[str, list[str]] = {}
    for line in analyze("syscall-filter").stdout.splitlines():
        item = line.strip()
        if item and not item.startswith("#"):
            if line.startswith("@"):
                groups[item] = []
            elif groups:
                groups[list(groups)[-1]].append(item)
    return groups


def allowed_syscalls(unit: str) -> set[str]:
    """What the unit's SystemCallFilter= lines allow, applied in order as systemd does: the first (an allow
    list) sets, a `~` line removes, a later plain line adds back."""
    groups = syscall_groups()

    def expand(item: str) -> set[str]:
        return set().union(*(expand(i) for i in groups[item])) if item.startswith("@") else {item}

    allowed: set[str] = set()
    for value in service_settings(unit)["SystemCallFilter"]:
        names = set().union(*(expand(i) for i in value.removeprefix("~").split()))
        allowed = allowed - names if value.startswith("~") else allowed | names
    return allowed


def traced_syscalls(trace: Path, module: str = "slurmlink.cli") -> set[str]:
    """System calls from the exec of `python -m module` on (setpriv's and the W^X wrapper's own calls before
    it are what systemd does before its filter applies), its children's included."""
    lines = trace.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if "execve(" in line and f'"{module}"' in line)
    names = set()
    for line in lines[start + 1:]:
        call = line.split(maxsplit=1)[-1].split("(", 1)[0]  # "1234 openat(AT_FDCWD, ..." -> "openat"
        if call.isidentifier():
            names.add(call)
    return names


MDWE = ("import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
        f"sys.exit('PR_SET_MDWE: ' + os.strerror(ctypes.get_errno())) if libc.prctl({PR_SET_MDWE}, "
        f"{PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) else os.execv(sys.argv[1], sys.argv[1:])")


def state_directory(path: Path, owner: str) -> Path:
    """What the unit's StateDirectory= makes: the service user's, mode 0700."""
    path.mkdir(mode=0o700)
    account = pwd.getpwnam(owner)
    os.chown(path, account.pw_uid, account.pw_gid)
    return path


Start = tuple[dict[str, Any], list[str], list[str]]  # the service's config, its privileges, requests to make


def api_start(workdir: Path, job_root: Path, users: tuple[str, ...], stack: ExitStack) -> Start:
    config = {"backend": "cli", "job_root": str(job_root), "auth": {"allow_unauthenticated": True},
              "users": {"default": users[0]}, "state_dir": str(state_directory(workdir / "api-state", "root"))}
    return config, setpriv(API), ["/metrics", "/healthz"]


def proxy_start(workdir: Path, job_root: Path, users: tuple[str, ...], stack: ExitStack) -> Start:
    checkin = stack.enter_context(CheckinStandin())
    subject = checkin.new_subject()
    (workdir / "users.txt").write_text(f"{checkin.issuer} {subject} {users[0]}\n")
    (workdir / "jwt.key").write_bytes(os.urandom(32))
    config = {"upstream": f"http://127.0.0.1:{free_port()}",  # no slurmrestd: /healthz answers 502/503
              "identity": {"issuers": [{"issuer": checkin.issuer}], "policy": {"vos": ["vo.example.org"]},
                           "mapping": [{"static": {"path": str(workdir / "users.txt")}}]},
              "jwt_key_file": str(workdir / "jwt.key"), "files": {"job_root": str(job_root)},
              "state_dir": str(state_directory(workdir / "proxy-state", users[1]))}
    # a whole request: the token checked against the stand-in's keys, entitlements, the static map
    return config, setpriv(PROXY, as_user=users[1]), ["/metrics", "/healthz",
                                                      f"/slurmlink/v1/whoami#{checkin.mint(subject)}"]


@needs_root
@pytest.mark.skipif(not kernel_has_mdwe(), reason="the kernel has no PR_SET_MDWE (Linux < 6.3)")
@pytest.mark.parametrize("unit", [API, PROXY])
def test_the_service_runs_within_its_units_limits(unit: str, job_root: Path, test_users: tuple[str, ...],
                                                  request: pytest.FixtureRequest) -> None:
    """The real service, started with its unit's capabilities, user and no_new_privs, under the kernel's W^X
    lock (PR_SET_MDWE, what MemoryDenyWriteExecute= enforces: some JITs and FFI callbacks break under it),
    answers its requests; with strace present, every system call it made is one its SystemCallFilter= allows."""
    assert service_settings(unit).get("MemoryDenyWriteExecute") == ["yes"]
    workdir = job_root.parent
    stack = ExitStack()  # the stand-ins a service needs; closed after it stopped
    request.addfinalizer(stack.close)
    config, privileges, requests = (api_start if unit == API else proxy_start)(workdir, job_root, test_users, stack)
    port = free_port()
    config["listen"] = {"host": "127.0.0.1", "port": port}
    (workdir / "service.yaml").write_text(yaml.safe_dump(config))
    trace = workdir / "strace.out"
    tracer = ["strace", "-f", "-qq", "-o", str(trace)] if shutil.which("strace") else []
    command = "api" if unit == API else "proxy"
    log = workdir / "service.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*tracer, *privileges, sys.executable, "-c", MDWE, sys.executable, "-m",
                                    "slurmlink.cli", command, "--config", str(workdir / "service.yaml")],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def get(call: str) -> httpx.Response | None:
            if process.poll() is not None:
                raise AssertionError(f"slurmlink {command} exited {process.returncode}: {log.read_text()[-2000:]}")
            path, _, token = call.partition("#")
            try:
                return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
            except httpx.TransportError:
                return None

        wait_until(lambda: get("/metrics"), 60, f"slurmlink {command} to answer under PR_SET_MDWE")
        answers = {call.partition("#")[0]: get(call) for call in requests}
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have ended by itself (the failure above)
            os.killpg(process.pid, signal.SIGTERM)  # the service, and strace around it
        process.wait(timeout=30)
    assert "PR_SET_MDWE" not in log.read_text()
    statuses = {path: answer.status_code if answer else None for path, answer in answers.items()}
    assert statuses["/metrics"] == 200 and statuses["/healthz"] in (200, 502, 503), statuses
    if unit == PROXY:
        whoami = answers["/slurmlink/v1/whoami"]
        assert whoami is not None and whoami.json().get("user") == test_users[0], statuses
    if tracer:
        outside = traced_syscalls(trace) - allowed_syscalls(unit)
        assert not outside, f"{unit}: system calls its SystemCallFilter= refuses: {sorted(outside)}"


@needs_root
def test_a_pod_runs_through_the_api_within_its_units_limits(slurm_cluster: DevCluster, tmp_path: Path) -> None:
    """End to end on the real SLURM: `slurmlink api` (mode 2) with only the unit's capabilities and
    no_new_privs (and, where the kernel has it, its W^X lock) submits a pod with sbatch as the mapped user,
    follows it to Succeeded and reads its log."""
    port = free_port()
    config = tmp_path / "api.yaml"
    config.write_text(yaml.safe_dump(api_config(slurm_cluster, port)))
    wrapper = [sys.executable, "-c", MDWE] if kernel_has_mdwe() else []
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*setpriv(API), *wrapper, sys.executable, "-m", "slurmlink.cli", "api",
                                    "--config", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        client = Client(f"http://127.0.0.1:{port}")

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"slurmlink api exited {process.returncode}: {log.read_text()[-2000:]}")
            try:
                return client.http.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 60, "slurmlink api to become ready")
        pod = make_pod([{"name": "main", "command": ["sh", "-c", "id -un"]}])
        assert client.submit(pod).isdigit()
        phase, status = client.finish(pod)
        assert phase.phase == "Succeeded", (status, log.read_text()[-2000:])
        assert client.logs(pod, "main") == f"{slurm_cluster.users[0]}\n".encode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


# ---- the proxy's interactive drop-in (kubectl exec and port-forward in mode 1) ----------------------------

INTERACTIVE = UNITS_DIR / "slurmlink-proxy.service.d" / "interactive.conf"


def with_interactive(unit_text: str) -> str:
    """The proxy's unit as systemd reads it with the drop-in: its [Service] lines added to the unit's (each key
    here merges with the unit's: capability lists are joined, a later SystemCallFilter= allows more)."""
    lines = [line for line in INTERACTIVE.read_text().splitlines() if line and not line.startswith(("#", "["))]
    return unit_text.replace("[Install]", "\n".join(lines) + "\n\n[Install]")


def test_the_interactive_drop_in_adds_only_what_setpriv_and_srun_need() -> None:
    settings = [line.partition("=") for line in INTERACTIVE.read_text().splitlines()]
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        [added] = [value for name, _, value in settings if name == key]
        assert sorted(cap.lower() for cap in added.split()) == ["cap_kill", "cap_setgid", "cap_setuid"], key
    assert "[Service]" in INTERACTIVE.read_text()


@needs_systemd_analyze
def test_the_proxy_with_the_interactive_drop_in_verifies_and_scores(tmp_path: Path) -> None:
    """Measured on systemd 252: 1.5 without the drop-in, 2.0 with it (docs/proxy.md)."""
    copies = verifiable_copies(tmp_path)
    merged = tmp_path / "merged" / PROXY
    merged.parent.mkdir()
    merged.write_text(with_interactive((copies / PROXY).read_text()))
    verified = analyze("verify", "--man=no", str(merged))
    assert (verified.stdout + verified.stderr).strip() == "", verified.stdout + verified.stderr
    scored = analyze("security", "--offline=true", "--threshold=20", str(merged))
    assert scored.returncode == 0, scored.stdout.strip().splitlines()[-1]


@needs_root
def test_the_interactive_drop_in_lets_the_proxy_start_a_step_as_the_caller(test_users: tuple[str, ...],
                                                                           tmp_path: Path) -> None:
    """The proxy's own user (a second test user) with the unit's and the drop-in's capabilities and
    no_new_privs runs the user switch of slurmlink.steps.srun (what precedes srun): the command runs as the
    caller with no capability left; with the unit's capabilities alone, it cannot."""
    from slurmlink.steps.srun import as_account

    caller, proxy_user = test_users[0], test_users[1]
    command = as_account(["/bin/sh", "-c", "id -u; grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status"], caller)
    plain = setpriv(PROXY, as_user=proxy_user)
    added = ["cap_setuid", "cap_setgid", "cap_kill"]
    listed = ",".join(["-all", *(f"+{c.removeprefix('cap_')}" for c in ["cap_dac_read_search", *added])])
    enabled = [listed if arg.startswith("-all,") else arg for arg in plain]  # bounding, inheritable, ambient
    ran = subprocess.run([*enabled, *command], capture_output=True, text=True, timeout=60, cwd="/")
    assert ran.returncode == 0, ran.stderr
    uid, *caps = ran.stdout.split("\n")
    assert int(uid) == pwd.getpwnam(caller).pw_uid
    assert all(line.split()[1] == "0000000000000000" for line in caps if line), caps
    refused = subprocess.run([*plain, *command], capture_output=True, text=True, timeout=60, cwd="/")
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr, refused
