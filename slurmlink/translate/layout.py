"""Where a job keeps things in the pod's working directory: one place for the script and its readers.

    <workdir>/job.out                      the job script's own output (not a container's)
    <workdir>/pod.json                     the pod as submitted, for people debugging at the site
    <workdir>/logs/<container>.log         a container's stdout and stderr, byte for byte
    <workdir>/status/<container>.started   UTC start time (RFC 3339), written when the container starts
    <workdir>/status/<container>.exit      exit code, written atomically when it ends
    <workdir>/status/<container>.finished  UTC end time
    <workdir>/status/<container>.reason    why it ended, when not by itself (DeadlineExceeded, Killed)
    <workdir>/status/<container>.restarts  how often it was restarted (restartPolicy OnFailure, probes)
    <workdir>/status/<container>.last      "<exit code> <started> <finished>" of the previous instance
    <workdir>/status/<container>.ready     "true"/"false": the readiness verdict (only with a startup or
                                           readiness probe; without one, a running container is ready)
    <workdir>/status/<container>.startup   "true"/"false": whether the startup probe succeeded
    <workdir>/status/<container>.events    the last probe/hook notes, "<seq>\t<type>\t<reason>\t<message>"
    <workdir>/logs/<container>.previous.log  the log of the previous instance (`kubectl logs --previous`)
    <workdir>/volumes/<volume>/...         the pod's volumes (configMap, secret, emptyDir, ...)
"""

from __future__ import annotations

from datetime import datetime

from slurmlink.core.records import ContainerNote, ContainerRecord, LastTermination

JOB_OUT = "job.out"
POD_FILE = "pod.json"
LOGS_DIR = "logs"
STATUS_DIR = "status"
VOLUMES_DIR = "volumes"
STATUS_SUFFIXES = ("started", "exit", "finished", "reason", "restarts", "last", "ready", "startup", "events")


def log_name(container: str, previous: bool = False) -> str:
    """The log file of a container (container names are DNS labels: `c.previous` is nobody's name)."""
    return f"{container}.previous.log" if previous else f"{container}.log"


def log_path(workdir: str, container: str, previous: bool = False) -> str:
    return f"{workdir}/{LOGS_DIR}/{log_name(container, previous)}"


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def container_records(files: dict[str, str]) -> dict[str, ContainerRecord]:
    """Build records from the status directory's files ({"c1.exit": "3\\n", ...})."""
    fields: dict[str, dict[str, str]] = {}
    for filename, content in files.items():
        container, _, suffix = filename.rpartition(".")
        if container and suffix in STATUS_SUFFIXES:
            fields.setdefault(container, {})[suffix] = content
    records = {}
    for container, f in fields.items():
        records[container] = ContainerRecord(
            name=container,
            started_at=parse_time(f["started"]) if "started" in f else None,
            finished_at=parse_time(f["finished"]) if "finished" in f else None,
            exit_code=parse_int(f["exit"]) if "exit" in f else None,
            reason=f.get("reason", "").strip(),
            restarts=parse_int(f.get("restarts", "0")) or 0,
            ready=parse_flag(f["ready"]) if "ready" in f else None,
            startup=parse_flag(f["startup"]) if "startup" in f else None,
            last=parse_last(f["last"]) if "last" in f else None,
            notes=parse_notes(f.get("events", "")),
        )
    return records


def parse_flag(text: str) -> bool | None:
    return {"true": True, "false": False}.get(text.strip())


def parse_last(text: str) -> LastTermination | None:
    words = text.split()
    code = parse_int(words[0]) if words else None
    if code is None:
        return None
    return LastTermination(exit_code=code, started_at=parse_time(words[1]) if len(words) > 1 else None,
                           finished_at=parse_time(words[2]) if len(words) > 2 else None)


def parse_notes(text: str) -> tuple[ContainerNote, ...]:
    """The lines of an events file that are whole and well formed (a note is a courtesy: bad lines are skipped)."""
    notes = []
    for line in text.split("\n")[:-1]:  # a last line without its newline may be cut short by the size limit
        parts = line.split("\t", 3)
        seq = parse_int(parts[0]) if len(parts) == 4 else None
        if seq is not None and parts[1] in ("Normal", "Warning") and parts[2].isalnum():
            notes.append(ContainerNote(seq, parts[1], parts[2], parts[3]))
    return tuple(notes)
