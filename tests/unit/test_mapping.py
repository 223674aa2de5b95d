"""User mapping: the strategy chain, the account safety check, static map, pool, template, service account, and
the ALISE client's reading of ALISE's answers (the real ALISE is in tests/integration/test_alise.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import pwd
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from slurmlink.identity import audit
from slurmlink.identity.entitlements import Decision
from slurmlink.identity.mapping import (
    AccountPolicy,
    Alise,
    AliseClient,
    ClaimTemplate,
    Mapper,
    MappingError,
    MappingRequest,
    MappingResult,
    Pool,
    ServiceAccount,
    StaticMap,
    Strategy,
)
from slurmlink.identity.pool import PoolExhausted, PoolStore, make_engine

ISS = "https://aai.egi.eu/auth/realms/egi"
SUB = "ef72aa@egi.eu"
VO = "vo.example.org"
ALLOW = Decision(True, f"member of {VO}", VO)


pytestmark = pytest.mark.usefixtures("test_users")  # sltest1..3, from tests/conftest.py


class Fixed(Strategy):
    """Returns a fixed answer (or raises it), counting calls."""

    def __init__(self, answer: str | None | Exception, name: str = "fixed") -> None:
        self.answer = answer
        self.name = name
        self.calls = 0

    async def resolve(self, request: MappingRequest) -> str | None:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def run_map(mapper: Mapper, subject: str = SUB, claims: dict[str, Any] | None = None,
            decision: Decision = ALLOW, issuer: str = ISS) -> MappingResult:
    return asyncio.run(mapper.map(issuer, subject, claims or {"sub": subject}, decision))


def map_error(mapper: Mapper, **kwargs: Any) -> str:
    with pytest.raises(MappingError) as info:
        run_map(mapper, **kwargs)
    return info.value.message


# ------------------------------------------------------------------------------------------------ chain


def test_first_match_wins_and_misses_fall_through() -> None:
    miss, hit, later = Fixed(None, "a"), Fixed("sltest1", "b"), Fixed("sltest2", "c")
    result = run_map(Mapper([miss, hit, later]))
    assert result.username == "sltest1" and result.strategy == "b"
    assert SUB in result.reason
    assert (miss.calls, hit.calls, later.calls) == (1, 1, 0)


def test_an_error_stops_the_chain_instead_of_falling_through() -> None:
    weaker = Fixed("sltest2", "service")
    mapper = Mapper([Fixed(MappingError("ALISE at x timed out"), "alise"), weaker])
    assert map_error(mapper) == "ALISE at x timed out"
    assert weaker.calls == 0


def test_an_unexpected_exception_is_a_refusal() -> None:
    weaker = Fixed("sltest2", "service")
    assert "failed (ZeroDivisionError)" in map_error(Mapper([Fixed(ZeroDivisionError(), "buggy"), weaker]))
    assert weaker.calls == 0


def test_nothing_matches() -> None:
    reason = map_error(Mapper([Fixed(None, "static"), Fixed(None, "service")]))
    assert reason == f"no local account for {SUB} from {ISS} (tried static, service)"


def test_denied_decision_is_never_mapped() -> None:
    strategy = Fixed("sltest1")
    reason = map_error(Mapper([strategy]), decision=Decision(False, f"not a member of {VO}"))
    assert reason == f"not authorised: not a member of {VO}"
    assert strategy.calls == 0


def test_vo_settings_narrow_the_chain() -> None:
    a, b = Fixed("sltest1", "alise"), Fixed("sltest2", "service")
    mapper = Mapper([a, b])
    decision = Decision(True, "ok", VO, {"strategies": ["service"]})
    assert run_map(mapper, decision=decision).username == "sltest2"
    assert a.calls == 0
    bad = Decision(True, "ok", VO, {"strategies": ["ldap"]})
    assert "names mapping strategies ['ldap'] that are not configured" in map_error(mapper, decision=bad)
    with pytest.raises(ValueError):
        mapper.check_vo_settings(VO, {"strategies": ["ldap"]})
    mapper.check_vo_settings(VO, {"strategies": ["alise"]})


def test_chain_configuration_errors() -> None:
    with pytest.raises(ValueError):
        Mapper([])
    with pytest.raises(ValueError):
        Mapper([Fixed("x", "a"), Fixed("y", "a")])


# ------------------------------------------------------------------------------------------------ safety


@pytest.mark.parametrize(("name", "expected"), [
    ("root", f"mapping for {SUB} gave root"),
    ("slurm", f"mapping for {SUB} gave the SlurmUser (slurm)"),
    ("daemon", f"mapping for {SUB} gave daemon (uid 1), a system account below the minimum uid 1000"),
    ("sys", "below the minimum uid 1000"),
    ("nobody", f"mapping for {SUB} gave nobody, which is on the deny list"),
    ("egi999", "user egi999 does not exist on this system"),
    ("a;rm -rf", "is not a valid user name"),
    ("Sltest1", "is not a valid user name"),
    ("sltest1\n", "is not a valid user name"),
    ("-rf", "is not a valid user name"),
    ("../etc", "is not a valid user name"),
    ("x" * 33, "is not a valid user name"),
    ("", "is not a valid user name"),
])
def test_unsafe_results_are_refused(name: str, expected: str) -> None:
    if name in ("slurm", "daemon", "sys", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            pytest.skip(f"{name} does not exist here")
    weaker = Fixed("sltest1", "service")
    reason = map_error(Mapper([Fixed(name, "static"), weaker]))
    assert expected in reason
    assert weaker.calls == 0  # an unsafe result is an error, not a miss


def test_configurable_slurm_user_min_uid_and_deny_list() -> None:
    assert "gave the SlurmUser (sltest3)" in map_error(
        Mapper([Fixed("sltest3")], AccountPolicy(slurm_user="sltest3")))
    uid = pwd.getpwnam("sltest2").pw_uid
    assert f"below the minimum uid {uid + 1}" in map_error(Mapper([Fixed("sltest2")], AccountPolicy(min_uid=uid + 1)))
    assert "on the deny list" in map_error(Mapper([Fixed("sltest1")], AccountPolicy(deny_users=frozenset({"sltest1"}))))
    assert run_map(Mapper([Fixed("daemon")], AccountPolicy(min_uid=0))).username == "daemon"


def test_aliases_of_root_and_of_the_slurm_user_are_refused() -> None:
    real = pwd.getpwnam("sltest1")

    def fake(name: str) -> pwd.struct_passwd:
        if name == "casefold":  # a case-insensitive NSS backend answering with another spelling
            return pwd.struct_passwd(("CaseFold", "x", 5000, 5000, "", "/", "/bin/sh"))
        uid = {"toor": 0, "slurm2": 64999, "slurm": 64999}.get(name)
        if uid is None:
            return pwd.getpwnam(name)
        return pwd.struct_passwd((name, "x", uid, uid, "", "/", "/bin/sh"))

    policy = AccountPolicy(lookup=fake)
    assert "gave root (toor has uid 0)" in map_error(Mapper([Fixed("toor")], policy))
    assert "gave the SlurmUser (slurm2)" in map_error(Mapper([Fixed("slurm2")], policy))
    assert "the system resolves it to 'CaseFold'" in map_error(Mapper([Fixed("casefold")], policy))
    assert run_map(Mapper([Fixed("sltest1")], policy)).username == real.pw_name


def test_hostile_names_never_reach_nss() -> None:
    looked_up: list[str] = []

    def spy(name: str) -> pwd.struct_passwd:
        looked_up.append(name)
        return pwd.getpwnam(name)

    map_error(Mapper([Fixed("a;rm -rf /")], AccountPolicy(lookup=spy)))
    assert looked_up == []


# ------------------------------------------------------------------------------------------------ static map


def write(path: Path, text: str) -> None:
    """Write and move mtime forward, so a reload is seen even on coarse-mtime file systems."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    new = max(old + 1_000_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(new, new))


def test_static_map_yaml_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    write(path, f"- {{issuer: '{ISS}', subject: '{SUB}', username: sltest1}}\n")
    mapper = Mapper([StaticMap(path)])
    result = run_map(mapper)
    assert (result.username, result.strategy) == ("sltest1", "static")
    assert str(path) in result.reason
    write(path, f"- {{issuer: '{ISS}', subject: '{SUB}', username: sltest2}}\n")
    assert run_map(mapper).username == "sltest2"
    assert "no local account" in map_error(mapper, subject="other@egi.eu")


def test_static_map_lines(tmp_path: Path) -> None:
    path = tmp_path / "map.txt"
    write(path, f"# issuer subject username\n\n{ISS} {SUB} sltest3\n{ISS} two@egi.eu   sltest1  \n")
    mapper = Mapper([StaticMap(path)])
    assert run_map(mapper).username == "sltest3"
    assert run_map(mapper, subject="two@egi.eu").username == "sltest1"
    assert "no local account" in map_error(mapper, issuer="https://aai-dev.egi.eu/auth/realms/egi")


def test_static_map_broken_on_reload_refuses_until_fixed(tmp_path: Path) -> None:
    path = tmp_path / "map.txt"
    write(path, f"{ISS} {SUB} sltest1\n")
    weaker = Fixed("sltest2", "pool")
    mapper = Mapper([StaticMap(path), weaker])
    assert run_map(mapper).username == "sltest1"
    write(path, f"{ISS} {SUB}\n")  # a half-saved edit
    assert "line 1: expected 'issuer subject username'" in map_error(mapper)
    assert weaker.calls == 0
    write(path, f"{ISS} {SUB} sltest3\n")
    assert run_map(mapper).username == "sltest3"
    path.unlink()
    assert "cannot be read" in map_error(mapper)


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("m.yaml", "{a: 1}", "expected a list"),
    ("m.yaml", "- {issuer: x, subject: y}", "entry 1 needs string issuer, subject and username"),
    ("m.yaml", "- [unclosed", "is invalid"),
    ("m.txt", "iss sub Alice", "'Alice' is not a valid user name"),
    ("m.txt", "iss sub sltest1\niss sub sltest2", "mapped twice"),
])
def test_static_map_invalid_at_start(tmp_path: Path, name: str, text: str, expected: str) -> None:
    write(tmp_path / name, text)
    with pytest.raises(MappingError, match=expected):
        StaticMap(tmp_path / name)


def test_static_map_missing_at_start(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot be read"):
        StaticMap(tmp_path / "absent.yaml")


def test_static_map_to_root_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "m.txt", f"{ISS} {SUB} root\n")
    assert map_error(Mapper([StaticMap(tmp_path / "m.txt")])) == f"mapping for {SUB} gave root"


# ------------------------------------------------------------------------------------------------ pool


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_pool_assignment_persists_across_mapper_instances(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "state" / "pool.sqlite")  # parent directory created on demand
    pool = Pool("sltest", digits=1, first=1, last=3, url=url)
    mapper = Mapper([pool])
    first = run_map(mapper, subject="alice@egi.eu")
    assert (first.username, first.strategy) == ("sltest1", "pool")
    assert run_map(mapper, subject="bob@egi.eu").username == "sltest2"
    asyncio.run(mapper.aclose())

    again = Mapper([Pool("sltest", digits=1, first=1, last=3, url=url)])
    assert run_map(again, subject="bob@egi.eu").username == "sltest2"
    assert run_map(again, subject="alice@egi.eu").username == "sltest1"
    assert run_map(again, subject="carol@egi.eu").username == "sltest3"
    # Same subject from another issuer is another person.
    assert "no free pool account (pool sltest1..sltest3)" in map_error(
        again, subject="alice@egi.eu", issuer="https://aai-dev.egi.eu/auth/realms/egi")
    asyncio.run(again.aclose())


def test_pool_skips_accounts_that_do_not_exist_or_are_unsafe(tmp_path: Path) -> None:
    for n in range(4, 10):
        with pytest.raises(KeyError):
            pwd.getpwnam(f"sltest{n}")
    uid1 = pwd.getpwnam("sltest1").pw_uid
    # sltest1 refused by min uid; sltest4..9 do not exist.
    policy = AccountPolicy(min_uid=uid1 + 1)
    mapper = Mapper([Pool("sltest", digits=1, first=1, last=9, url=sqlite_url(tmp_path / "p.db"))], policy)
    assert [run_map(mapper, subject=s).username for s in ("a", "b")] == ["sltest2", "sltest3"]
    assert "no free pool account" in map_error(mapper, subject="c")
    asyncio.run(mapper.aclose())


def test_pool_release(tmp_path: Path) -> None:
    store = PoolStore(sqlite_url(tmp_path / "p.db"))
    names = ["egi001", "egi002"]
    assert store.assign("egi", ISS, "a", names) == "egi001"
    assert store.release("egi", ISS, "a") == "egi001"
    assert store.release("egi", ISS, "a") is None
    assert store.assign("egi", ISS, "b", names) == "egi001"
    store.dispose()


def test_pool_concurrent_assignment_from_two_engines_on_one_sqlite_file(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "shared.sqlite")
    stores = [PoolStore(url), PoolStore(url)]  # two "replicas"
    names = [f"egi{i:03d}" for i in range(1, 31)]
    subjects = [f"user{i}@egi.eu" for i in range(40)]
    results: dict[tuple[int, str], str | None] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(k: int) -> None:
        barrier.wait()
        # Every worker asks for every subject: the same person hits both replicas at once.
        for subject in (subjects if k % 2 else subjects[::-1]):
            try:
                results[(k, subject)] = stores[k % 2].assign("egi", ISS, subject, names)
            except PoolExhausted:
                results[(k, subject)] = None
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    table = stores[0].all("egi")
    assert len(table) == 30  # every account assigned exactly once (username is the primary key)
    owners = list(table.values())
    assert len(set(owners)) == 30  # ... each to a different person
    for (_, subject), username in results.items():
        if username is not None:  # every replica agrees on who holds what
            assert table[username] == (ISS, subject)
    exhausted = {s for (_, s), u in results.items() if u is None}
    assert len(exhausted) == 10 and not exhausted & {s for _, s in owners}
    for s in stores:
        s.dispose()


def test_pool_lost_race_is_retried(tmp_path: Path) -> None:
    """The IntegrityError path: another replica inserts between our read and our insert (what PostgreSQL's
    READ COMMITTED allows; plain pysqlite behaves alike because it reads outside a transaction)."""
    url = sqlite_url(tmp_path / "race.sqlite")
    ours = PoolStore(engine=create_engine(url))
    theirs = PoolStore(engine=make_engine(url))
    names = ["egi001", "egi002", "egi003"]
    interfered: list[str] = []

    def usable(name: str) -> bool:
        if not interfered:
            interfered.append(theirs.assign("egi", ISS, "them", names))
        return True

    assert ours.assign("egi", ISS, "us", names, usable) == "egi002"
    assert interfered == ["egi001"]
    assert ours.all("egi") == {"egi001": (ISS, "them"), "egi002": (ISS, "us")}
    ours.dispose()
    theirs.dispose()


def test_pool_configuration_errors(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "p.db")
    with pytest.raises(ValueError):
        Pool("egi", digits=2, first=1, last=100, url=url)
    with pytest.raises(ValueError):
        Pool("EGI", url=url)
    with pytest.raises(ValueError):
        Pool("egi", first=0, url=url)


# ------------------------------------------------------------------------------------------------ template, service


def test_claim_template_preferred_username_is_flagged_unsafe(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        template = ClaimTemplate("{preferred_username}")
    assert any("preferred_username is not guaranteed unique" in w for w in template.warnings)
    assert "unsafe" in caplog.text
    result = run_map(Mapper([template]), claims={"preferred_username": "sltest2"})
    assert (result.username, result.strategy) == ("sltest2", "template")


def test_claim_template_with_truncated_unique_claim() -> None:
    template = ClaimTemplate("sltest{voperson_id:.1}")
    assert any("truncating voperson_id" in w for w in template.warnings)
    assert run_map(Mapper([template]), claims={"voperson_id": "3f00ba@egi.eu"}).username == "sltest3"
    assert ClaimTemplate("u_{voperson_id}").warnings == ()


def test_claim_template_missing_claim_is_a_miss() -> None:
    mapper = Mapper([ClaimTemplate("{preferred_username}"), ServiceAccount("sltest1")])
    assert run_map(mapper, claims={"sub": SUB}).strategy == "service"
    assert run_map(mapper, claims={"preferred_username": ["sltest2"]}).strategy == "service"


def test_claim_template_hostile_or_uppercase_values() -> None:
    mapper = Mapper([ClaimTemplate("{preferred_username}"), ServiceAccount("sltest1")])
    assert "is not a valid user name" in map_error(mapper, claims={"preferred_username": "a;rm -rf"})
    assert "is not a valid user name" in map_error(mapper, claims={"preferred_username": "SLTEST2"})
    assert "gave root" in map_error(mapper, claims={"preferred_username": "root"})
    lower = Mapper([ClaimTemplate("{preferred_username}", lowercase=True)])
    assert run_map(lower, claims={"preferred_username": "SLTEST2"}).username == "sltest2"


@pytest.mark.parametrize("bad", ["{claims.__class__}", "{a[0]}", "{a!r}", "static", "{}"])
def test_claim_template_refuses_non_claim_fields(bad: str) -> None:
    with pytest.raises(ValueError):
        ClaimTemplate(bad)


def test_service_account_per_vo_and_default() -> None:
    mapper = Mapper([ServiceAccount("sltest1")])
    assert run_map(mapper).username == "sltest1"
    per_vo = Decision(True, "ok", VO, {"service_account": "sltest3"})
    assert run_map(mapper, decision=per_vo).username == "sltest3"
    assert "no local account" in map_error(Mapper([ServiceAccount()]))
    assert "gave the SlurmUser" in map_error(Mapper([ServiceAccount("slurm")]))


# ------------------------------------------------------------------------------------------------ ALISE client


APIKEY = "k" * 32
ISS_HASH = hashlib.sha1(ISS.encode(), usedforsecurity=False).hexdigest()


def alise_transport(*responses: httpx.Response | Exception,
                    seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler)


def linked(username: Any = "sltest1", sub: str = SUB) -> httpx.Response:
    return httpx.Response(200, json={
        "internal": {"sub": "int-1", "iss": "https://sso.site/realms/hpc", "username": username,
                     "last_seen": 1, "display_name": "T"},
        "external": [{"sub": sub, "iss": ISS, "last_seen": 1, "display_name": "T"}]})


NOT_MAPPED = httpx.Response(401, json={"detail": [{"msg": "no such user", "type": "not-mapped"}]})
BAD_KEY = httpx.Response(401, json={"detail": [{"msg": "invalid apikey", "type": "invalid"}]})


def client(transport: httpx.MockTransport, **kwargs: Any) -> AliseClient:
    return AliseClient("https://alise.example/", "hpc", APIKEY, transport=transport, **kwargs)


def lookup(c: AliseClient, subject: str = SUB) -> str | None:
    async def go() -> str | None:
        return await c.lookup(ISS, subject)
    return asyncio.run(go())


def test_alise_request_shape_and_hit() -> None:
    seen: list[httpx.Request] = []
    c = client(alise_transport(linked(sub="a b+c@egi.eu"), seen=seen))
    assert lookup(c, "a b+c@egi.eu") == "sltest1"
    request = seen[0]
    # quote_plus, then percent-encoded again: the server decodes the path once and ALISE unquote_plus()es it.
    assert request.url.raw_path.decode().startswith(
        f"/api/v1/target/hpc/mapping/issuer/{ISS_HASH}/user/a%2Bb%252Bc%2540egi.eu?")
    assert urllib.parse.unquote_plus(urllib.parse.unquote("a%2Bb%252Bc%2540egi.eu")) == "a b+c@egi.eu"
    assert request.url.params["apikey"] == APIKEY
    assert APIKEY not in repr(c)


def test_alise_hit_and_cache() -> None:
    seen: list[httpx.Request] = []
    c = client(alise_transport(linked(), seen=seen))
    assert lookup(c) == "sltest1"
    assert lookup(c) == "sltest1"
    assert len(seen) == 1


def test_alise_not_mapped_is_a_miss_and_cached_briefly() -> None:
    seen: list[httpx.Request] = []
    c = client(alise_transport(NOT_MAPPED, seen=seen), miss_ttl=60)
    assert lookup(c) is None
    assert lookup(c) is None
    assert len(seen) == 1
    uncached = client(alise_transport(NOT_MAPPED, seen=seen), miss_ttl=0)
    lookup(uncached)
    lookup(uncached)
    assert len(seen) == 3


@pytest.mark.parametrize(("response", "expected"), [
    (BAD_KEY, "rejected the apikey for site hpc"),
    (httpx.Response(401, json={"detail": "nope"}), "refused the lookup (HTTP 401)"),
    (httpx.Response(200, json={"error": "unable to open database file"}),
     "reported an internal error: unable to open database file"),
    (linked(username=None), "has a linked account for ef72aa@egi.eu but no internal username"),
    (linked(username={}), "no internal username"),  # what ALISE's addict Dict gives for a missing claim
    (linked(sub="someone-else@egi.eu"), "answered for a different identity"),
    (httpx.Response(200, text="<html>proxy login</html>"), "no internal username"),
    (httpx.Response(404, json={"detail": "Not Found"}), "answered HTTP 404"),
    (httpx.Response(302, headers={"Location": "https://elsewhere/"}), "answered HTTP 302"),
    (httpx.Response(503), "answered HTTP 503"),
    (httpx.ConnectError("refused"), "unreachable (ConnectError)"),
    (httpx.ReadTimeout("slow"), "timed out"),
])
def test_alise_failures_are_errors_not_misses(response: httpx.Response | Exception, expected: str) -> None:
    seen: list[httpx.Request] = []
    c = client(alise_transport(response, seen=seen), retries=1)
    weaker = Fixed("sltest2", "pool")
    mapper = Mapper([Alise(c), weaker])
    assert expected in map_error(mapper)
    assert weaker.calls == 0
    per_call = 2 if isinstance(response, Exception) or response.status_code >= 500 else 1  # one retry
    assert len(seen) == per_call
    map_error(mapper)  # errors are not cached
    assert len(seen) == 2 * per_call


def test_alise_retry_recovers() -> None:
    c = client(alise_transport(httpx.Response(502), linked()), retries=1)
    assert lookup(c) == "sltest1"


def test_alise_miss_falls_through_to_the_next_strategy() -> None:
    mapper = Mapper([Alise(client(alise_transport(NOT_MAPPED))), ServiceAccount("sltest3")])
    result = run_map(mapper)
    assert (result.username, result.strategy) == ("sltest3", "service")


def test_alise_result_passes_the_safety_check() -> None:
    assert "gave root" in map_error(Mapper([Alise(client(alise_transport(linked("root"))))]))


def test_alise_apikey_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        lookup(client(alise_transport(linked())))
        with pytest.raises(MappingError) as info:
            lookup(client(alise_transport(httpx.ConnectError("refused"))))
    assert "HTTP Request" in caplog.text  # httpx did log the request...
    assert APIKEY not in caplog.text  # ...without the key
    assert APIKEY not in info.value.message


def test_alise_check() -> None:
    ok = client(alise_transport(httpx.Response(200, json={"apikey": True})))
    asyncio.run(ok.check())
    bad = client(alise_transport(httpx.Response(200, json={"apikey": False})))
    with pytest.raises(MappingError, match="does not accept the configured apikey"):
        asyncio.run(bad.check())


def test_alise_configuration_errors() -> None:
    for args in (("ftp://x", "hpc", APIKEY), ("https://x", "", APIKEY), ("https://x", "hpc", "")):
        with pytest.raises(ValueError):
            AliseClient(*args)



# ------------------------------------------------------------------------------------------------ audit


class _Caller:
    issuer = ISS
    subject = SUB
    token_hash = hashlib.sha256(b"eyJhbGciOiJSUzI1NiJ9.payload.sig").hexdigest()


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "slurmlink.audit"]


def test_mapping_decision_is_audited_as_one_json_line(caplog: pytest.LogCaptureFixture) -> None:
    result = run_map(Mapper([ServiceAccount("sltest1")]))
    with caplog.at_level(logging.INFO, logger="slurmlink.audit"):
        audit.record_for(_Caller(), client="192.0.2.7", action="job/submit", allowed=True, reason=result.reason,
                         vo=VO, mapped_user=result.username, job_id=4242, strategy=result.strategy)
    [line] = audit_lines(caplog)
    assert line["time"].endswith("Z")
    assert {k: line[k] for k in ("client", "issuer", "subject", "vo", "mapped_user", "action", "job_id",
                                 "decision", "strategy")} == {
        "client": "192.0.2.7", "issuer": ISS, "subject": SUB, "vo": VO, "mapped_user": "sltest1",
        "action": "job/submit", "job_id": "4242", "decision": "allow", "strategy": "service"}
    assert line["token"] == _Caller.token_hash[:16]
    assert caplog.records[0].levelno == logging.INFO


def test_audit_never_logs_a_token_and_cannot_be_split(caplog: pytest.LogCaptureFixture) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"  # noqa: S105 - a fake token
    with caplog.at_level(logging.INFO, logger="slurmlink.audit"):
        audit.record(action="job/submit", allowed=False, reason="not a member\n{\"decision\":\"allow\"}",
                     subject="x" * 5000, token_hash=token)
    assert token not in caplog.text
    [record] = [r for r in caplog.records if r.name == "slurmlink.audit"]
    assert "\n" not in record.getMessage() and record.levelno == logging.WARNING
    line = json.loads(record.getMessage())
    assert line["decision"] == "deny"
    assert line["token"] == "(not a hash: dropped)"  # noqa: S105 - a marker, not a secret
    assert len(line["subject"]) < 600


@pytest.mark.parametrize("subject", [SUB, "\0client", "a\"\0time\"b", "\0action", "x" * 5000, "line\n{\"x\":1}"])
def test_a_prepared_audit_line_is_the_line_record_for_writes(caplog: pytest.LogCaptureFixture, subject: str) -> None:
    # The proxy prepares a caller's line once (audit.Prepared); claims that hold its marks, or anything else,
    # must not change what is written.
    class Hostile(_Caller):
        pass

    Hostile.subject = subject
    prepared = audit.Prepared(Hostile(), allowed=True, reason="static", vo=VO, mapped_user="sltest1")
    with caplog.at_level(logging.INFO, logger="slurmlink.audit"):
        for action, client in [("POST /slurm/v0.0.38/job/submit", "192.0.2.7"), ("GET /\0client\"x", None)]:
            prepared.record(action=action, client=client)
            audit.record_for(Hostile(), action=action, client=client, allowed=True, reason="static", vo=VO,
                             mapped_user="sltest1")
    records = [r for r in caplog.records if r.name == "slurmlink.audit"]
    assert len(records) == 4
    for fast, slow in (records[0:2], records[2:4]):
        assert "\n" not in fast.getMessage()
        fast_line, slow_line = json.loads(fast.getMessage()), json.loads(slow.getMessage())
        assert fast.getMessage().replace(fast_line["time"], "T") == slow.getMessage().replace(slow_line["time"], "T")
        assert fast_line.pop("time")[:16] == slow_line.pop("time")[:16]
        fast_entry, slow_entry = dict(fast.audit), dict(slow.audit)  # type: ignore[attr-defined]
        fast_entry.pop("time"), slow_entry.pop("time")
        assert fast_entry == slow_entry and fast.levelno == slow.levelno == logging.INFO
