"""Our ALISE client against the real `alise` package (PyPI), run as a process on loopback.

ALISE cannot share our venv (it pins httpx<0.28 through fastapi-oauth2 and drags in requests, flaat, social-auth),
so the fixture builds its own venv under `.venv-alise/` (git-ignored), once, and reuses it. ALISE 1.1.5 uses
Python 3.12 f-string syntax, so a Python >= 3.12 is looked for (PATH, pyenv); without one, ALISE 1.1.3 runs on
this interpreter: its mapping endpoint is the same code.

Linked accounts are seeded through ALISE's own storage layer (`alise.models.DatabaseUser`: per-site SQLite
`<db_name>_<site>.db`, tables int_user / ext_user / apikeys), the way its web login would store them. At import
ALISE fetches each configured OP's discovery document, so a tiny discovery server stands in for the OPs.

Environment: SLURMLINK_ALISE_VENV (venv path), SLURMLINK_ALISE_PYTHON (interpreter for it),
SLURMLINK_TEST_ALISE=skip (skip these tests instead of installing).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import glob
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from slurmlink.identity.entitlements import Decision
from slurmlink.identity.mapping import Alise, AliseClient, Mapper, MappingError, ServiceAccount
from tests.harness.ports import free_port

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("SLURMLINK_ALISE_VENV", REPO / ".venv-alise"))
ALISE_NEW, ALISE_OLD = "1.1.5", "1.1.3"  # 1.1.5 needs Python >= 3.12
SITE = "hpc"
APIKEY = "ctestapikeyctestapikeyctestapike"  # ALISE's own keys are 32 lower-case letters
DECISION = Decision(True, "member of vo.example.org", "vo.example.org")

# (external subject, internal subject, internal username): what a user linking their accounts would store.
LINKED = [
    ("alice@egi.eu", "int-alice", "sltest1"),
    ("b+ob x@egi.eu", "int-bob", "sltest2"),  # '+' and ' ' survive quote_plus / unquote_plus
    ("carol@egi.eu", "f:1c8e:carol", "sltest3"),  # Keycloak federated-user ids contain ':', which ALISE breaks on
]

pytestmark = [pytest.mark.skipif(os.environ.get("SLURMLINK_TEST_ALISE") == "skip",
                                 reason="SLURMLINK_TEST_ALISE=skip"),
              pytest.mark.usefixtures("test_users")]  # the linked accounts above must exist


# ------------------------------------------------------------------------------------------------ venv


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys, venv; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:  # e.g. a pyenv shim for a version that is not active
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def choose_python() -> tuple[str, str]:
    """(interpreter, alise version): 1.1.5 on Python >= 3.12 if one is here, else 1.1.3 on this one."""
    forced = os.environ.get("SLURMLINK_ALISE_PYTHON")
    candidates = [forced] if forced else [
        *(shutil.which(f"python3.{m}") for m in (12, 13, 14)),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3"))),
        *sorted(glob.glob("/usr/bin/python3.1[2-9]")), *sorted(glob.glob("/usr/local/bin/python3.1[2-9]")),
    ]
    for candidate in candidates:
        if candidate and (version := _python_version(candidate)) is not None:
            if version >= (3, 12):
                return os.path.realpath(candidate), ALISE_NEW
            if forced:
                return os.path.realpath(candidate), ALISE_OLD
    return os.path.realpath(sys.executable), ALISE_OLD


def ensure_alise_venv() -> tuple[Path, str]:
    """The venv's python and the alise version in it, built if missing or built for something else."""
    python, version = choose_python()
    marker = VENV / ".slurmlink-alise"
    want = f"alise=={version} {python}\n"
    venv_id = hashlib.sha256(str(VENV).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"slurmlink-alise-{venv_id}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions share one venv: build it once
        if not (marker.exists() and marker.read_text() == want):
            started = time.monotonic()
            subprocess.run([python, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
            pip = subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                  "--disable-pip-version-check", f"alise=={version}"],
                                 capture_output=True, text=True, timeout=900)
            if pip.returncode != 0:
                pytest.fail(f"installing alise=={version} into {VENV} failed:\n{pip.stderr[-3000:]}", pytrace=False)
            marker.write_text(want)
            print(f"built {VENV} with alise=={version} on {python} in {time.monotonic() - started:.0f}s")
    return VENV / "bin" / "python", version


# ------------------------------------------------------------------------------------------------ stand-ins


class _Discovery(http.server.BaseHTTPRequestHandler):
    """Every `<issuer>/.well-known/openid-configuration` on this server: all ALISE reads at start."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        port = cast(http.server.HTTPServer, self.server).server_port
        issuer = f"http://127.0.0.1:{port}{self.path.split('/.well-known')[0]}"
        body = json.dumps({
            "issuer": issuer, "authorization_endpoint": f"{issuer}/auth", "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo", "revocation_endpoint": f"{issuer}/revoke",
            "jwks_uri": f"{issuer}/certs"}).encode()
        self.send_response(200 if self.path.endswith("/.well-known/openid-configuration") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


SEED = r"""
import json, sys
from addict import Dict
from alise.models import DatabaseUser  # reads ./.config/alise.conf: db_name

spec = json.load(sys.stdin)
db = DatabaseUser(spec["site"])
for ext_sub, int_sub, username in spec["linked"]:
    session = f"site:{int_sub}"  # ALISE's session id is the internal identity "<provider>:<sub>"
    db.store_internal_user(Dict(identity=session, provider="site", sub=int_sub,
                                generated_username=username, display_name=username), session)
    db.store_external_user(Dict(identity=f"egi:{ext_sub}", provider="egi", sub=ext_sub,
                                display_name=username), session)
db.store_apikey(user_name="slurmlink test", user_email=None, sub="admin", iss=spec["issuer"],
                apikey=spec["apikey"])
print("seeded", len(spec["linked"]))
"""


class AliseEnv:
    """A configured, seeded ALISE working directory and the discovery stand-in it needs."""

    def __init__(self, workdir: Path) -> None:
        self.python, self.version = ensure_alise_venv()
        self.workdir = workdir
        self.discovery = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
        threading.Thread(target=self.discovery.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{self.discovery.server_port}"
        self.issuer = f"{base}/auth/realms/egi"  # Check-in's path shape; ALISE keys it by sha1(issuer)
        (workdir / ".config").mkdir()
        # ALISE reads ./.config/alise.conf first; the database is <db_name>_<site>.db.
        (workdir / ".config" / "alise.conf").write_text(f"""
[messages]
log_level = INFO
[database]
db_name = {workdir}/alise
[auth.egi]
op_url = {self.issuer}
client_id = slurmlink-test
client_secret = not-used
scopes = openid profile
[auth.site]
op_url = {base}/realms/hpc
client_id = slurmlink-test
client_secret = not-used
scopes = openid profile
internal = True
username_claim = preferred_username
""")
        seeded = subprocess.run([str(self.python), "-c", SEED], cwd=workdir, env=self.env(), capture_output=True,
                                text=True, timeout=120, input=json.dumps(
                                    {"site": SITE, "linked": LINKED, "apikey": APIKEY, "issuer": self.issuer}))
        assert seeded.returncode == 0 and "seeded" in seeded.stdout, seeded.stderr[-3000:]
        # A site whose database cannot be opened: ALISE answers 200 {"error": ...} for it.
        (workdir / "alise_broken.db").mkdir()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        return {**env, "NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}

    def close(self) -> None:
        self.discovery.shutdown()
        self.discovery.server_close()


class AliseServer:
    """`uvicorn alise.daemon:app` (ALISE's documented deployment, minus gunicorn) on a free loopback port."""

    def __init__(self, env: AliseEnv, name: str = "alise") -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = env.workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.env.python), "-m", "uvicorn", "alise.daemon:app", "--host", "127.0.0.1",
                 "--port", str(self.port)], cwd=self.env.workdir, env=self.env.env(), stdout=log,
                stderr=subprocess.STDOUT)
        deadline = started + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"ALISE exited with {self.process.returncode}:\n{self.log_tail()}", pytrace=False)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v1/version", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"ALISE did not answer within 90s:\n{self.log_tail()}", pytrace=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else "(no log)"


@pytest.fixture(scope="module")
def alise_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AliseEnv]:
    env = AliseEnv(tmp_path_factory.mktemp("alise"))
    yield env
    env.close()


@pytest.fixture(scope="module")
def alise(alise_env: AliseEnv) -> Iterator[AliseServer]:
    server = AliseServer(alise_env)
    took = server.start()
    print(f"ALISE {alise_env.version} up in {took:.1f}s at {server.url}")
    yield server
    server.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def resolve(server: AliseServer, issuer: str, subject: str, *, apikey: str = APIKEY, site: str = SITE,
                  **kwargs: Any) -> str | None:
    client = AliseClient(server.url, site, apikey, **kwargs)
    try:
        return await client.lookup(issuer, subject)
    finally:
        await client.aclose()


# ------------------------------------------------------------------------------------------------ tests


def test_linked_account_is_found(alise: AliseServer, alise_env: AliseEnv) -> None:
    async def go() -> None:
        mapper = Mapper([Alise(AliseClient(alise.url, SITE, APIKEY)), ServiceAccount("sltest3")])
        try:
            result = await mapper.map(alise_env.issuer, "alice@egi.eu", {}, DECISION)
            assert (result.username, result.strategy) == ("sltest1", "alise")
            assert "ALISE site hpc" in result.reason
            result = await mapper.map(alise_env.issuer, "b+ob x@egi.eu", {}, DECISION)
            assert (result.username, result.strategy) == ("sltest2", "alise")
        finally:
            await mapper.aclose()
    run(go())


def test_unknown_user_is_a_miss(alise: AliseServer, alise_env: AliseEnv) -> None:
    assert run(resolve(alise, alise_env.issuer, "stranger@egi.eu")) is None
    # An issuer ALISE does not know is also "not-mapped" (ALISE cannot tell the two apart).
    assert run(resolve(alise, "https://aai-dev.egi.eu/auth/realms/egi", "alice@egi.eu")) is None

    async def go() -> None:
        mapper = Mapper([Alise(AliseClient(alise.url, SITE, APIKEY)), ServiceAccount("sltest3")])
        try:
            result = await mapper.map(alise_env.issuer, "stranger@egi.eu", {}, DECISION)
            assert (result.username, result.strategy) == ("sltest3", "service")
        finally:
            await mapper.aclose()
    run(go())


def test_bad_apikey_is_an_error(alise: AliseServer, alise_env: AliseEnv) -> None:
    with pytest.raises(MappingError, match="rejected the apikey for site hpc"):
        run(resolve(alise, alise_env.issuer, "alice@egi.eu", apikey="wrongwrongwrongwrongwrongwrongwr"))
    # Keys are per site: a good key for another site is just as invalid.
    with pytest.raises(MappingError, match="rejected the apikey for site other"):
        run(resolve(alise, alise_env.issuer, "alice@egi.eu", site="other"))

    async def check(apikey: str) -> None:
        client = AliseClient(alise.url, SITE, apikey)
        try:
            await client.check()
        finally:
            await client.aclose()
    run(check(APIKEY))
    with pytest.raises(MappingError, match="does not accept the configured apikey"):
        run(check("wrongwrongwrongwrongwrongwrongwr"))


def test_alise_internal_errors_are_errors(alise: AliseServer, alise_env: AliseEnv) -> None:
    # ALISE answers HTTP 200 {"error": ...} when an internal identity contains ':' ...
    with pytest.raises(MappingError, match="reported an internal error"):
        run(resolve(alise, alise_env.issuer, "carol@egi.eu"))
    # ... and when the site's database cannot be opened.
    with pytest.raises(MappingError, match="reported an internal error: unable to open database file"):
        run(resolve(alise, alise_env.issuer, "alice@egi.eu", site="broken"))


def test_alise_hung_or_stopped_is_an_error(alise_env: AliseEnv) -> None:
    server = AliseServer(alise_env, name="alise-stop")
    server.start()
    try:
        async def go() -> None:
            cached = AliseClient(server.url, SITE, APIKEY, timeout=0.5, retries=1)
            weaker = ServiceAccount("sltest3")
            mapper = Mapper([Alise(cached), weaker])
            try:
                assert (await mapper.map(alise_env.issuer, "alice@egi.eu", {}, DECISION)).username == "sltest1"
                assert server.process is not None
                server.process.send_signal(signal.SIGSTOP)  # hung: accepts connections, never answers
                started = time.monotonic()
                with pytest.raises(MappingError, match="timed out; cannot tell which account is linked"):
                    await resolve(server, alise_env.issuer, "alice@egi.eu", timeout=0.5, retries=1)
                assert time.monotonic() - started < 5  # bounded: 2 attempts x 0.5 s + backoff
                with pytest.raises(MappingError, match="timed out"):  # never the service account instead
                    await mapper.map(alise_env.issuer, "stranger@egi.eu", {}, DECISION)
                server.process.send_signal(signal.SIGCONT)
                assert await resolve(server, alise_env.issuer, "alice@egi.eu") == "sltest1"
                server.stop()
                with pytest.raises(MappingError, match="unreachable"):
                    await resolve(server, alise_env.issuer, "alice@egi.eu")
                # A hit cached before the outage keeps working for cache_ttl (300 s by default).
                assert (await mapper.map(alise_env.issuer, "alice@egi.eu", {}, DECISION)).username == "sltest1"
            finally:
                await mapper.aclose()
        run(go())
    finally:
        server.stop()
