"""The `slurm-job.vk.io/flags` annotation: extra sbatch options, only those the site allows."""

from __future__ import annotations

import shlex

from slurmlink.translate.errors import PodRejected
from slurmlink.translate.site import FORBIDDEN_OPTIONS, SiteConfig

FLAGS_ANNOTATION = "slurm-job.vk.io/flags"

_SHORT = {"-A": "--account", "-q": "--qos", "-p": "--partition", "-C": "--constraint", "-N": "--nodes",
          "-n": "--ntasks", "-c": "--cpus-per-task", "-t": "--time", "-G": "--gpus", "-x": "--exclude",
          "-w": "--nodelist", "-b": "--begin", "-L": "--licenses", "-u": "--uid", "-D": "--chdir",
          "-o": "--output", "-e": "--error", "-i": "--input", "-J": "--job-name", "-a": "--array",
          "-d": "--dependency", "-W": "--wait"}
_NO_VALUE = {"--exclusive", "--requeue", "--no-requeue", "--parsable", "--wait", "--test-only",
             "--get-user-env", "--kill-on-invalid-dep"}


def parse_flags(text: str, site: SiteConfig) -> dict[str, str | None]:
    """Options as {"--name": value or None}. shlex only splits words here: nothing is executed."""
    if "\x00" in text or "\n" in text.strip():
        raise PodRejected(f"annotation {FLAGS_ANNOTATION}: options must be on one line", "InvalidFlags")
    try:
        words = shlex.split(text, comments=False)
    except ValueError as exc:
        raise PodRejected(f"annotation {FLAGS_ANNOTATION}: {exc}", "InvalidFlags") from exc
    options: dict[str, str | None] = {}
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
        if name in FORBIDDEN_OPTIONS or name not in site.allowed_options:
            raise PodRejected(f"annotation {FLAGS_ANNOTATION}: option {name} is not allowed at this site",
                              "FlagNotAllowed")
        if not has_value and name not in _NO_VALUE and index < len(words) and not words[index].startswith("-"):
            value, has_value = words[index], "="
            index += 1
        if not has_value and name not in _NO_VALUE:
            # A bare option would take the next argument sbatch sees as its value: ours.
            raise PodRejected(f"annotation {FLAGS_ANNOTATION}: option {name} needs a value", "InvalidFlags")
        if name in _NO_VALUE and has_value:
            raise PodRejected(f"annotation {FLAGS_ANNOTATION}: option {name} takes no value", "InvalidFlags")
        options[name] = value if has_value else None
    return options
