"""The proxy's own CPU per forwarded submission, with SLURM out of the way (issue 14).
Usage (from the repository): .venv/bin/python bench/proxy_cpu.py [--requests 8000] [--rounds 2] [--clients 8]

`slurmlink proxy` (its own process, as in proxy_throughput.py: the same configuration, the Check-in stand-in as
issuer, a static map) forwards `--clients` keep-alive clients' POSTs of the same job to a canned slurmrestd: a
small uvloop server in a process of its own that answers every POST with a submit answer and every GET with a
ping, at once (`--read`: the clients GET a job, whose answer the proxy relays). With no slurmrestd or
slurmctld sharing the cores, the proxy's CPU per request moves much less with the machine's load than in
proxy_throughput.py, so changes of 10% show; it is also lower there (more requests per wake-up). Not a test:
nothing passes or fails. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services and the Check-in stand-in (standins/) are not installed

import httpx  # noqa: E402
import uvloop  # noqa: E402

from bench.services import free_port, proxy_service  # noqa: E402
from standins.checkin import CheckinStandin  # noqa: E402

API_VERSION = "v0.0.38"
SUBMITTED = json.dumps({"meta": {"plugin": {"type": "openapi/v0.0.38"}}, "errors": [], "warnings": [],
                        "job_id": 4242, "step_id": "BATCH", "job_submit_user_msg": ""}).encode()
PINGS = json.dumps({"errors": [], "pings": [{"hostname": "node", "ping": "UP", "status": 0}]}).encode()
JOB = json.dumps({"job": {"name": "slbench-proxy", "current_working_directory": "/tmp",
                          "environment": ["PATH=/bin:/usr/bin"], "script": "#!/bin/bash\ntrue"}}).encode()


def canned_slurmrestd(port: int) -> None:
    """Answers each request on a kept-alive connection at once: a submit answer to a POST, pings otherwise."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                body = SUBMITTED if head.startswith(b"POST ") else PINGS
                writer.write(b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: %d\r\n"
                             b"Content-Type: application/json\r\n\r\n%s" % (len(body), body))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of a process so far, in clock ticks, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


async def submit(url: str, headers: dict[str, str], requests: int, clients: int, read: bool = False) -> float:
    """Seconds for `clients` keep-alive clients to make `requests` submissions (`read`: job lookups)
    between them."""
    left = [requests]

    async def client() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while left[0] > 0:
                left[0] -= 1
                if read:
                    answer = await http.get(url, headers=headers)
                else:
                    answer = await http.post(url, headers=headers, content=JOB)
                if answer.status_code != 200:
                    raise RuntimeError(f"the proxy answered {answer.status_code}: {answer.text[:300]}")

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=8000, help="submissions per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--read", action="store_true",
                        help="GET a job (an answer the proxy relays) instead of submitting")
    args = parser.parse_args()
    upstream_port = free_port()
    upstream = multiprocessing.Process(target=canned_slurmrestd, args=(upstream_port,), daemon=True)
    upstream.start()
    tmp = Path(tempfile.mkdtemp(prefix="slurmlink-proxy-cpu-"))
    key = tmp / "jwt.key"
    key.write_bytes(os.urandom(32))  # the SlurmUser tokens it mints are never checked here
    tick = os.sysconf("SC_CLK_TCK")
    try:
        with CheckinStandin() as checkin:
            subject = checkin.new_subject()
            users = tmp / "users.txt"
            users.write_text(f"{checkin.issuer} {subject} sltest1\n")
            config = {"listen": {"host": "127.0.0.1", "port": free_port()},
                      "upstream": f"http://127.0.0.1:{upstream_port}", "api_version": API_VERSION,
                      "identity": {"issuers": [{"issuer": checkin.issuer}], "policy": {"vos": ["vo.example.org"]},
                                   "mapping": [{"static": {"path": str(users)}}],
                                   "accounts": {"slurm_user": "slurm"}},
                      "slurm_user": "slurm", "jwt_key_file": str(key),
                      "rate_limit": {"requests_per_second": 100_000, "burst": 100_000},
                      "state_dir": str(tmp / "proxy-state")}
            with proxy_service(config, tmp) as proxy:
                url = f"{proxy.url}/slurm/{API_VERSION}/job/{'4242' if args.read else 'submit'}"
                headers = {"Authorization": f"Bearer {checkin.mint(subject)}", "Content-Type": "application/json"}
                # warm: the identity cached, the connections open
                asyncio.run(submit(url, headers, 500, args.clients, read=args.read))
                for round_ in range(args.rounds):
                    load = os.getloadavg()[0]
                    before = cpu_ticks(proxy.pid)
                    seconds = asyncio.run(submit(url, headers, args.requests, args.clients, read=args.read))
                    user, system = (after - was for after, was in zip(cpu_ticks(proxy.pid), before, strict=True))
                    per = 1000 / tick / args.requests
                    print(f"round {round_ + 1}: proxy CPU {(user + system) * per:.3f} ms/request (user "
                          f"{user * per:.3f}, system {system * per:.3f}), {args.requests / seconds:.0f} requests/s, "
                          f"{args.clients} clients, load {load:.1f}", flush=True)
    finally:
        upstream.kill()


if __name__ == "__main__":
    main()
