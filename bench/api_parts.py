"""The API's own CPU per create, by part, with no SLURM and no HTTP (issue 14).
Usage (as root, from the repository): .venv/bin/python bench/api_parts.py [--creates 3000] [--commands 400]

- `app`: `--creates` pods through the API's ASGI front (the guard, `/create`'s parsing, translation, site
  policy, the registry, the change feed, the file watch, the answer), called in-process, with a cli backend
  whose submit answers at once: everything a create costs in the API besides HTTP and the pod's submission;
- `pod directory`: the cli backend's `_prepare_workdir` (the directory and the job script, as the pod's
  account), inline, and the hand-over to a worker thread it is done in;
- `command`: `Runner.run` of `/bin/true` 8 at a time, straight and through `runuser -u nobody`.

Each is the CPU of this process (all its threads, not its children) per operation, on uvloop as the API runs.
The pods are those of submit_throughput.py's throughput phases. Not a test: nothing passes or fails. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pwd
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.submit_throughput import make_pod  # noqa: E402
from slurmlink.api.app import create_app, lean_front  # noqa: E402
from slurmlink.api.backends import make_backend  # noqa: E402
from slurmlink.api.config import ApiConfig  # noqa: E402
from slurmlink.slurm.cli import CliBackend  # noqa: E402
from slurmlink.slurm.runner import Runner  # noqa: E402
from slurmlink.translate.job import BatchJob  # noqa: E402
from slurmlink.translate.script import build_job  # noqa: E402
from slurmlink.translate.site import SiteConfig  # noqa: E402

USER = "nobody"  # an account on every machine; runuser to it needs root


def per_op_ms(start: float, count: int) -> float:
    return round((time.process_time() - start) * 1000 / count, 3)


async def app_part(job_root: Path, creates: int) -> float:
    config = ApiConfig.model_validate({"auth": {"allow_unauthenticated": True}, "users": {"default": USER},
                                       "site": {"runtime": "host"}, "job_root": str(job_root)})
    backend = make_backend(config)
    assert isinstance(backend, CliBackend)
    ids = iter(range(1, 10**9))

    async def submitted_at_once(job: BatchJob, user: str) -> str:
        return str(next(ids))

    backend.submit = submitted_at_once  # type: ignore[method-assign]
    app = create_app(config, backend)
    front, service = lean_front(app), app.state.service
    service.recovered.set()  # no lifespan here: nothing to recover
    bodies = [json.dumps({"pod": make_pod(deferred=True), "configmaps": [], "secrets": [], "projectedvolumesmaps": [],
                          "jobscriptURL": ""}).encode() for _ in range(creates)]

    async def create(body: bytes) -> None:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        scope = {"type": "http", "method": "POST", "path": "/create", "query_string": b"", "state": {},
                 "headers": [(b"host", b"api"), (b"content-type", b"application/json")]}
        await front(scope, receive, send)
        assert sent[0]["status"] == 200, sent

    warm = creates // 10
    for body in bodies[:warm]:
        await create(body)
    start = time.process_time()
    for body in bodies[warm:]:
        await create(body)
    return per_op_ms(start, creates - warm)


async def command_parts(job_root: Path, count: int) -> dict[str, float]:
    backend = make_backend(ApiConfig.model_validate({"users": {"default": USER}, "job_root": str(job_root),
                                                     "auth": {"allow_unauthenticated": True}}))
    assert isinstance(backend, CliBackend)
    account = pwd.getpwnam(USER)
    jobs = [build_job(pod, workdir=f"{job_root}/slbench-{pod['metadata']['uid']}", site=SiteConfig(runtime="host"))
            for pod in (make_pod(deferred=True) for _ in range(count))]
    found: dict[str, float] = {}
    start = time.process_time()
    for job in jobs:
        backend._prepare_workdir(job, account)
    found["pod directory, inline"] = per_op_ms(start, count)
    start = time.process_time()
    for job in jobs:
        await asyncio.to_thread(len, job.script)
    found["hand-over to a worker thread"] = per_op_ms(start, count)
    for label, user in (("command /bin/true", None), ("command runuser -u nobody -- /bin/true", USER)):
        start = time.process_time()
        await eight_at_a_time(Runner(), user, count)
        found[f"{label}, 8 at a time"] = per_op_ms(start, count)
    return found


async def eight_at_a_time(runner: Runner, user: str | None, count: int) -> None:
    todo = list(range(count))

    async def worker() -> None:
        while todo:
            todo.pop()
            await runner.run(["/bin/true"], user=user, stdin=b"x" * 2000)

    await asyncio.gather(*(worker() for _ in range(8)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creates", type=int, default=3000)
    parser.add_argument("--commands", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slurmlink-bench-") as tmp:
        app_root, command_root = Path(tmp, "app"), Path(tmp, "commands")
        for root in (app_root, command_root):
            root.mkdir(mode=0o711)
        found = {"app (ASGI front to answer, submit not counted)": uvloop.run(app_part(app_root, args.creates)),
                 **uvloop.run(command_parts(command_root, args.commands))}
    for label, ms in found.items():
        print(f"  {label:<52}{ms:>8.3f} ms CPU each")


if __name__ == "__main__":
    main()
