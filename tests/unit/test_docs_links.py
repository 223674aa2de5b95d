"""The deployment guides (docs/guides/*.md) and the README point only at things that exist: every relative link
names a file of the repository (and, for a Markdown file, a heading when it has an anchor), every
`slurmlink <command>` in their code is a command of the CLI (slurmlink/cli.py's typer app), and every
configuration a guide marks `<!-- checked as: api|proxy|vk|helm-values -->` loads with that service's model
(or uses only keys of the chart's values.yaml)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel, ValidationError

from slurmlink.api.config import ApiConfig
from slurmlink.cli import app
from slurmlink.proxy.config import ProxyConfig
from slurmlink.vk.config import VkConfig

REPO = Path(__file__).resolve().parents[2]
GUIDES = sorted((REPO / "docs" / "guides").glob("*.md"))
CHECKED = [*GUIDES, REPO / "README.md"]

# Commands and options of issue 12's shared interface that other branches add. Until those are merged they are
# missing here; the lead empties this set after merging them (test_pending_names_are_still_missing says when).
PENDING: set[str] = set()  # e.g. "config": the command and what follows it (config example)
PENDING_PATHS: set[str] = set()  # a path, or a path and a heading's anchor ("docs/x.md#a-heading")
PENDING_KEYS: dict[str, set[str]] = {}  # e.g. {"api": {"admin"}}: keys of a branch not merged yet
MODELS: dict[str, type[BaseModel]] = {"api": ApiConfig, "proxy": ProxyConfig, "vk": VkConfig}
CHART_VALUES = REPO / "deploy" / "helm" / "slurmlink-vk" / "values.yaml"
SNIPPET = re.compile(r"<!-- checked as: ([\w-]+) -->\s*\n([ \t]*)```yaml\n(.*?)^[ \t]*```", re.S | re.M)

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)  # also indented, in numbered steps
SPAN = re.compile(r"`([^`\n]+)`")
# `slurmlink WORD` where slurmlink starts a command: at the start of the code, after a prompt, `exec`, `--`
# (runuser -u USER -- slurmlink), `=` (ExecStart=), a pipe or `&&`, or as a path (.venv/bin/slurmlink).
COMMAND = re.compile(r"(?:^|(?<=[\s=;|&(`$]))(?:[\w.~-]*/)*slurmlink(?=[ \t]+([^\s`]+)(?:[ \t]+([^\s`]+))?)")
STARTS = ("$", "exec", "--", "&&", "||", "|", "=")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def _links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    return [m.group(1) for m in LINK.finditer(text)]


def _code(path: Path) -> list[str]:
    """Every line of code: fenced blocks line by line, and inline spans."""
    text = path.read_text()
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    return lines + SPAN.findall(FENCE.sub("", text))


def _commands(path: Path) -> set[str]:
    """`slurmlink WORD` (and `slurmlink GROUP WORD`) named in the file's code, as written."""
    found = set()
    for line in _code(path):
        for match in COMMAND.finditer(line):
            before = line[:match.start()].rstrip()
            if before and not before.endswith(STARTS):
                continue
            first, second = (word.rstrip(".,;:)") if word else word for word in match.groups())
            found.add(first)
            if second and re.fullmatch(r"[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*", second):
                found.update(f"{first} {word}" for word in second.split("|"))
    return found


def _exists(name: str, root: Any) -> bool:
    """Whether the CLI has this command, `group command` or root option (typer's click: groups have `commands`)."""
    first, _, second = name.partition(" ")
    if first.startswith("-"):
        return any(first in param.opts for param in root.params)
    command = root.commands.get(first)
    if command is None:
        return False
    if not second or not hasattr(command, "commands"):
        return True  # a command's own arguments (check-config api) are not commands
    return second in command.commands


def _root() -> Any:
    return typer.main.get_command(app)


def test_there_are_three_guides() -> None:
    assert {p.name for p in GUIDES} >= {"site-mode2.md", "site-mode1.md", "kubernetes.md"}


def _pending_link(path: Path, anchor: str) -> bool:
    if not path.is_relative_to(REPO):
        return False
    name = str(path.relative_to(REPO))
    return name in PENDING_PATHS or f"{name}#{anchor}" in PENDING_PATHS


def _link_exists(pending: str) -> bool:
    name, _, anchor = pending.partition("#")
    path = REPO / name
    return path.exists() and (not anchor or anchor in _anchors(path))


def _broken_links(doc: Path) -> list[str]:
    broken = []
    for link in _links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:: not ours to check offline
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if _pending_link(path, anchor):
            continue
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {path.name}")
    return broken


@pytest.mark.parametrize("doc", CHECKED, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_exist(doc: Path) -> None:
    broken = _broken_links(doc)
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


@pytest.mark.parametrize("doc", CHECKED, ids=lambda p: str(p.relative_to(REPO)))
def test_named_commands_exist(doc: Path) -> None:
    root = _root()
    missing = sorted(name for name in _commands(doc) if name.split()[0] not in PENDING and not _exists(name, root))
    assert not missing, f"{doc.relative_to(REPO)} names commands the CLI does not have: {missing}"


def _snippets() -> list[tuple[str, str, Any]]:
    found = []
    for guide in GUIDES:
        for kind, _, block in SNIPPET.findall(guide.read_text()):
            found.append((f"{guide.name}: {kind}", kind, yaml.safe_load(textwrap.dedent(block))))
    return found


def _has_field(model: type[BaseModel], dotted: str) -> bool:
    """Whether `a.b` is a field of the model (through nested models, optional or not)."""
    head, _, rest = dotted.partition(".")
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    nested = [t for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
              if isinstance(t, type) and issubclass(t, BaseModel)]
    return any(_has_field(t, rest) for t in nested)


def _unknown_values(given: Any, defaults: Any, prefix: str = "") -> list[str]:
    """Keys of `given` that the chart's values.yaml does not have (free-form maps, `{}` there, take anything)."""
    if not isinstance(given, dict) or not isinstance(defaults, dict) or not defaults:
        return []
    unknown = []
    for key, value in given.items():
        if key not in defaults:
            unknown.append(f"{prefix}{key}")
        else:
            unknown += _unknown_values(value, defaults[key], f"{prefix}{key}.")
    return unknown


def test_guides_have_checked_configurations() -> None:
    assert {kind for _, kind, _ in _snippets()} >= {"api", "proxy", "helm-values"}


@pytest.mark.parametrize(("where", "kind", "config"), _snippets(), ids=lambda v: v if isinstance(v, str) else "")
def test_configuration_snippets_load(where: str, kind: str, config: Any) -> None:
    if kind == "helm-values":
        if not CHART_VALUES.exists():
            assert str(CHART_VALUES.relative_to(REPO)) in PENDING_PATHS
            pytest.skip("the chart is not merged yet")
        unknown = _unknown_values(config, yaml.safe_load(CHART_VALUES.read_text()))
        assert not unknown, f"{where}: not values of the chart: {unknown}"
        return
    try:
        MODELS[kind].model_validate(config)
    except ValidationError as exc:
        pending = PENDING_KEYS.get(kind, set())
        errors = [e for e in exc.errors() if not (e["type"] == "extra_forbidden"
                                                  and ".".join(map(str, e["loc"])) in pending)]
        assert not errors, f"{where}: {errors}"


def test_pending_names_are_still_missing() -> None:
    """Once a branch that adds a pending name is merged, the name leaves PENDING (so it is checked again)."""
    root = _root()
    merged = sorted(name for name in PENDING if _exists(name, root))
    merged += sorted(path for path in PENDING_PATHS if _link_exists(path))
    merged += sorted(f"{kind}: {key}" for kind, keys in PENDING_KEYS.items() for key in keys
                     if _has_field(MODELS[kind], key))
    assert not merged, f"merged now: remove {merged} from PENDING(_PATHS, _KEYS) in {Path(__file__).name}"


def test_the_checks_find_what_they_should(tmp_path: Path) -> None:
    """A guard on the test itself: what counts as naming a command or a broken link, and what does not."""
    sample = tmp_path / "sample.md"
    sample.write_text("# Check-in identity (`identity:`)\n\n"
                      "Run `slurmlink vk -c vk.yaml`, `runuser -u slurmlink -- slurmlink proxy`, and\n\n```\n"
                      "ExecStart=/usr/bin/slurmlink api -c /etc/slurmlink/api.yaml\n"
                      "kubectl -n slurmlink get pods\n.venv/bin/slurmlink dev-cluster up|down\n```\n"
                      "slurmlink runs pods (prose, not code), `the API it offers; slurmlink speaks v0.0.38`.\n\n"
                      "[ok](#check-in-identity-identity), [gone](nowhere.md), [no heading](sample.md#nope), "
                      "[web](https://example.org/x)\n")
    assert _commands(sample) == {"vk", "proxy", "api", "dev-cluster", "dev-cluster up", "dev-cluster down"}
    assert _broken_links(sample) == ["nowhere.md: no such file", "sample.md#nope: no heading #nope in sample.md"]
    assert _exists("dev-cluster up", _root()) and not _exists("dev-cluster sideways", _root())
    assert not _exists("no-such-command", _root())
