"""Cost of access-token validation per request: warm cache vs cold, against the Check-in stand-in on loopback.

Usage: .venv/bin/python bench/token_validation.py [--warm 20000] [--cold 500] [--concurrency 16] [--standin-thread]

Scenarios (each with its own validator; discovery and JWKS are fetched before timing starts):
- warm: the same token again and again: a cache hit, no crypto, no network;
- cold_jwt_only_rs256 / _es256: a new token per request, userinfo off: parsing + signature + claim checks;
- cold_userinfo: a new token per request: signature + one userinfo call (what Check-in needs for entitlements);
- cold_introspection: same with introspection instead of userinfo;
- cold_userinfo_concurrent: as cold_userinfo with --concurrency requests in flight; its throughput is the
  stand-in's (one uvicorn worker verifying each token), its latency mostly queueing there;
- reject_unknown_issuer / reject_bad_signature: what a hostile token costs.
The stand-in runs in a forked process on loopback (it keeps the keys this process mints with), so the two do not
share a GIL; with --standin-thread it runs in a thread here, and thread switches then dominate the network rows.
On a small machine the stand-in still competes for CPUs. "cpu µs" is this process's CPU time per request, i.e.
the validator's own cost (with httpx) when the stand-in is forked. Not a test: nothing passes or fails.
Writes bench/results/token_validation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the stand-in lives in tests/, which is not installed

import httpx  # noqa: E402
import jwt  # noqa: E402

from slurmlink.identity.oidc import IssuerConfig, TokenRejected, TokenValidator  # noqa: E402
from standins.checkin import DEFAULT_CLIENT, CheckinStandin, new_key  # noqa: E402

RESULTS = REPO / "bench" / "results" / "token_validation.json"


def summarize(name: str, samples_ns: list[int], calls: int, cpu_s: float, wall_s: float | None = None
              ) -> dict[str, Any]:
    us = sorted(s / 1000 for s in samples_ns)
    n = len(us)
    row: dict[str, Any] = {
        "scenario": name, "n": n,
        "mean_us": statistics.fmean(us), "p50_us": us[n // 2], "p95_us": us[int(n * 0.95) - 1],
        "p99_us": us[max(int(n * 0.99) - 1, 0)], "max_us": us[-1],
        "cpu_us": cpu_s * 1e6 / n,  # this process only: the validator's share when the stand-in is forked
        "http_calls_per_request": calls / n,
    }
    row["requests_per_s"] = n / wall_s if wall_s else 1e6 / row["mean_us"]
    return row


async def timed(tokens: list[str], validate: Callable[[str], Awaitable[Any]], expect_ok: bool = True) -> list[int]:
    samples = []
    for token in tokens:
        start = time.perf_counter_ns()
        try:
            await validate(token)
            ok = True
        except TokenRejected:
            ok = False
        samples.append(time.perf_counter_ns() - start)
        if ok != expect_ok:
            raise SystemExit(f"unexpected {'acceptance' if ok else 'rejection'} in the benchmark")
    return samples


async def scenario(idp: CheckinStandin, http: httpx.AsyncClient, name: str, tokens: list[str],
                   expect_ok: bool = True, concurrency: int = 1, **cfg: Any) -> dict[str, Any]:
    validator = TokenValidator([IssuerConfig(issuer=idp.issuer, **cfg)], http=http)
    report = await validator.warm_up()
    if report[idp.issuer] is not None:
        raise SystemExit(f"the stand-in is not usable: {report[idp.issuer]}")
    if name == "warm":
        await validator.validate(tokens[0])
    before = validator.http_calls
    cpu = time.process_time()
    wall = time.perf_counter()
    if concurrency == 1:
        samples = await timed(tokens, validator.validate, expect_ok)
    else:
        chunks = [tokens[i::concurrency] for i in range(concurrency)]
        parts = await asyncio.gather(*(timed(chunk, validator.validate, expect_ok) for chunk in chunks))
        samples = [s for part in parts for s in part]
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return summarize(name, samples, validator.http_calls - before, cpu, wall if concurrency > 1 else None)


def wait_ready(idp: CheckinStandin) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(idp.discovery_url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit("the Check-in stand-in did not start")


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    idp = CheckinStandin()
    server: multiprocessing.process.BaseProcess | None = None
    if args.standin_thread:
        idp.start()
    else:
        server = multiprocessing.get_context("fork").Process(target=idp.serve_forever, daemon=True)
        server.start()
    try:
        wait_ready(idp)
        return await scenarios(args, idp)
    finally:
        if server is not None:
            server.terminate()
            server.join(5)
        else:
            idp.stop()


async def scenarios(args: argparse.Namespace, idp: CheckinStandin) -> list[dict[str, Any]]:
    rows = []
    async with httpx.AsyncClient() as http:
        one = idp.mint()
        rows.append(await scenario(idp, http, "warm", [one] * args.warm))
        rows.append(await scenario(idp, http, "cold_jwt_only_rs256", [idp.mint() for _ in range(args.cold * 4)],
                                   userinfo=False))
        rows.append(await scenario(idp, http, "cold_jwt_only_es256",
                                   [idp.mint(kid=idp.ec_kid) for _ in range(args.cold * 4)], userinfo=False))
        rows.append(await scenario(idp, http, "cold_userinfo", [idp.mint() for _ in range(args.cold)]))
        rows.append(await scenario(idp, http, "cold_introspection", [idp.mint() for _ in range(args.cold)],
                                   client_id=DEFAULT_CLIENT[0], client_secret=DEFAULT_CLIENT[1]))
        rows.append(await scenario(idp, http, "cold_userinfo_concurrent",
                                   [idp.mint() for _ in range(args.cold * 2)], concurrency=args.concurrency))
        foreign = jwt.encode({"iss": "https://evil.example", "sub": "x"}, new_key().private, algorithm="RS256")
        rows.append(await scenario(idp, http, "reject_unknown_issuer", [foreign] * args.warm, expect_ok=False))
        forged = idp.sign(idp.access_claims(), key=new_key("RS256", idp.rsa_kid))
        rows.append(await scenario(idp, http, "reject_bad_signature", [forged] * (args.cold * 4),
                                   expect_ok=False))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm", type=int, default=20000, help="requests in the warm and cheap scenarios")
    parser.add_argument("--cold", type=int, default=500, help="requests in the cold scenarios")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--standin-thread", action="store_true", help="run the stand-in in a thread of this process")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print(f"{'scenario':<26}{'n':>7}{'mean µs':>10}{'p50 µs':>10}{'p95 µs':>10}{'p99 µs':>10}{'max µs':>10}"
          f"{'cpu µs':>9}{'req/s':>9}{'http/req':>9}")
    for r in rows:
        print(f"{r['scenario']:<26}{r['n']:>7}{r['mean_us']:>10.1f}{r['p50_us']:>10.1f}{r['p95_us']:>10.1f}"
              f"{r['p99_us']:>10.1f}{r['max_us']:>10.1f}{r['cpu_us']:>9.1f}{r['requests_per_s']:>9.0f}"
              f"{r['http_calls_per_request']:>9.2f}")
    result = {
        "benchmark": "token_validation",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "pyjwt": jwt.__version__, "httpx": httpx.__version__},
        "params": vars(args),
        "note": ("stand-in on loopback in " + ("a thread of this process" if args.standin_thread
                                                else "a forked process") + "; it competes for the same CPUs"),
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
