"""The `slurm-job.vk.io/flags` annotation: extra sbatch options, only those the site allows.

Each option is one of three kinds (site.py has the lists and the reasons):
- owned by slurmlink (`--job-name`, `--output`, ...): dropped; the vk tells the pod in a Warning event;
- forbidden (`--uid`, `--export`, `--wrap`, ...), or not in the site's `allowed_options`: the pod fails
  (FlagNotAllowed);
- allowed: passed on to the job.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from slurmlink.core.errors import PodRejected
from slurmlink.translate.site import FORBIDDEN_OPTIONS, OWNED_OPTIONS, SiteConfig
from slurmlink.wire.names import FLAGS_ANNOTATION

DROPPED_REASON = "FlagsDropped"

_SHORT = {"-A": "--account", "-q": "--qos", "-p": "--partition", "-C": "--constraint", "-N": "--nodes",
          "-n": "--ntasks", "-c": "--cpus-per-task", "-t": "--time", "-G": "--gpus", "-x": "--exclude",
          "-w": "--nodelist", "-b": "--begin", "-L": "--licenses", "-u": "--uid", "-D": "--chdir",
          "-o": "--output", "-e": "--error", "-i": "--input", "-J": "--job-name", "-a": "--array",
          "-d": "--dependency", "-W": "--wait"}
# What shlex splits on, and what it undoes: without the latter, its split is the former's (7 times cheaper).
_SHLEX = shlex.shlex(posix=True)
_BLANKS = re.compile(f"[{re.escape(_SHLEX.whitespace)}]+")
_QUOTING = frozenset(_SHLEX.quotes + _SHLEX.escape)
_NO_VALUE = {"--exclusive", "--requeue", "--no-requeue", "--parsable", "--wait", "--test-only",
             "--get-user-env", "--kill-on-invalid-dep"}


@dataclass(frozen=True)
class Flags:
    options: dict[str, str | None] = field(default_factory=dict)  # passed on: {"--name": value or None}
    dropped: tuple[str, ...] = ()  # owned by slurmlink, in the order given (each once)


def _words(text: str) -> list[str]:
    if "\x00" in text or "\n" in text.strip():
        raise PodRejected(f"annotation {FLAGS_ANNOTATION}: options must be on one line", "InvalidFlags")
    if _QUOTING.isdisjoint(text):
        return [word for word in _BLANKS.split(text) if word]
    try:
        return shlex.split(text, comments=False)  # shlex only splits words here: nothing is executed
    except ValueError as exc:
        raise PodRejected(f"annotation {FLAGS_ANNOTATION}: {exc}", "InvalidFlags") from exc


def _refuse(name: str, site: SiteConfig) -> None:
    if name in FORBIDDEN_OPTIONS:
        raise PodRejected(f"annotation {FLAGS_ANNOTATION}: option {name} is not allowed: "
                          f"{FORBIDDEN_OPTIONS[name]}", "FlagNotAllowed")
    if name not in site.allowed_options:
        raise PodRejected(f"annotation {FLAGS_ANNOTATION}: option {name} is not allowed at this site",
                          "FlagNotAllowed")


def classify_flags(text: str, site: SiteConfig) -> Flags:
    """The options to pass on and the ones dropped; PodRejected for a refused option or bad syntax."""
    words = _words(text)
    options: dict[str, str | None] = {}
    dropped: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("--"):
            name, has_value, value = word.partition("=")
        elif word[:2] in _SHORT:
            name, value = _SHORT[word[:2]], word[2:]
            has_value = "=" if value else ""
        else:
            raise PodRejected(f"annotation {FLAGS_ANNOTATION}: {word!r} is not an sbatch option", "InvalidFlags")
        owned = name in OWNED_OPTIONS
        if not owned:
            _refuse(name, site)
        if not has_value and name not in _NO_VALUE and index < len(words) and not words[index].startswith("-"):
            value, has_value = words[index], "="
            index += 1
        if owned:
            if name not in dropped:
                dropped.append(name)
            continue
        if not has_value and name not in _NO_VALUE:
            # A bare option would take the next argument sbatch sees as its value: ours.
            raise PodRejected(f"annotation {FLAGS_ANNOTATION}: option {name} needs a value", "InvalidFlags")
        if name in _NO_VALUE and has_value:
            raise PodRejected(f"annotation {FLAGS_ANNOTATION}: option {name} takes no value", "InvalidFlags")
        options[name] = value if has_value else None
    return Flags(options, tuple(dropped))


def parse_flags(text: str, site: SiteConfig) -> dict[str, str | None]:
    """The options to pass on, as {"--name": value or None}."""
    return classify_flags(text, site).options


def dropped_message(dropped: list[str] | tuple[str, ...]) -> str:
    """The Warning event's text: each dropped option and why."""
    parts = [f"{name} ({OWNED_OPTIONS.get(name, 'set by slurmlink')})" for name in dropped]
    return f"annotation {FLAGS_ANNOTATION}: dropped {'; '.join(parts)}"


def owned_only(names: list[str]) -> list[str]:
    """The dropped options another process named (the API's header): names slurmlink owns only."""
    return [name for name in names if name in OWNED_OPTIONS]
