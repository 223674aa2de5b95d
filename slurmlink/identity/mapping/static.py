"""Strategy `static`: (issuer, subject) -> username from a file the site maintains."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from .base import USERNAME_RE, MappingError, MappingRequest, Strategy, StrategyOptions, show

log = logging.getLogger(__name__)


class StaticMap(Strategy):
    """(issuer, subject) -> username from a file, re-read when it changes (mtime, size or inode).

    YAML (`.yaml`/`.yml`): a list of {issuer, subject, username}. Otherwise: `issuer subject username` lines,
    `#` starting a comment line. A file that cannot be read or parsed refuses every request until fixed, rather
    than keeping a stale map alive (a removed line must stop working).
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str = "static",
                 file_format: Literal["auto", "yaml", "lines"] = "auto") -> None:
        self.name = name
        self.path = Path(path)
        self.description = f"static map {self.path}"
        if file_format == "auto":
            file_format = "yaml" if self.path.suffix in (".yaml", ".yml") else "lines"
        self.file_format = file_format
        self._signature: tuple[int, int, int] | None = None
        self._entries: dict[tuple[str, str], str] = {}
        self._error: str | None = None
        self._refresh()
        if self._error:
            raise MappingError(self._error)

    async def resolve(self, request: MappingRequest) -> str | None:
        self._refresh()
        if self._error:
            raise MappingError(self._error)
        return self._entries.get((request.issuer, request.subject))

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except OSError as exc:
            self._signature, self._error = None, f"static map {self.path} cannot be read: {exc.strerror}"
            return
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            text = self.path.read_text(encoding="utf-8")
            entries = _parse_yaml(text) if self.file_format == "yaml" else _parse_lines(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
            self._error = f"static map {self.path} is invalid: {exc}"
            log.error("%s", self._error)
            return
        self._entries, self._error = entries, None
        log.info("static map %s loaded: %d entries", self.path, len(entries))


def _parse_yaml(text: str) -> dict[tuple[str, str], str]:
    data = yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, list):
        raise ValueError("expected a list of {issuer, subject, username}")
    entries: dict[tuple[str, str], str] = {}
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str)
                                                 for k in ("issuer", "subject", "username")):
            raise ValueError(f"entry {i} needs string issuer, subject and username")
        _add(entries, item["issuer"], item["subject"], item["username"], f"entry {i}")
    return entries


def _parse_lines(text: str) -> dict[tuple[str, str], str]:
    entries: dict[tuple[str, str], str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise ValueError(f"line {number}: expected 'issuer subject username'")
        _add(entries, fields[0], fields[1], fields[2], f"line {number}")
    return entries


def _add(entries: dict[tuple[str, str], str], issuer: str, subject: str, username: str, where: str) -> None:
    if not USERNAME_RE.fullmatch(username):
        raise ValueError(f"{where}: {show(username)} is not a valid user name")
    key = (issuer, subject)
    if key in entries and entries[key] != username:
        raise ValueError(f"{where}: {subject} from {issuer} is mapped twice ({entries[key]}, {username})")
    entries[key] = username


class StaticOptions(StrategyOptions):
    """(issuer, subject) → account from a file, re-read when it changes."""

    kind: Literal["static"] = "static"
    name: str = Field(default="static", description=(
        "the step's name, which a VO's `settings.strategies: [...]` refers to; names must be distinct"))
    path: str = Field(description="the map file")
    file_format: Literal["auto", "yaml", "lines"] = Field(default="auto", description=(
        "`auto`: YAML for `.yaml`/`.yml`, else `issuer subject username` lines"))

    def build(self) -> StaticMap:
        return StaticMap(self.path, name=self.name, file_format=self.file_format)
