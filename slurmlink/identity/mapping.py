"""Map an authorised (issuer, subject) to a local account: an ordered chain of strategies, first match wins.

Each strategy answers one of three ways:
  * a username  - the chain stops, the name goes through the account safety check;
  * None        - "I don't know this person": the next strategy is asked;
  * MappingError - "I cannot answer" (ALISE down, bad apikey, broken map file, pool exhausted): the chain stops
    and the request is refused.
An error is never treated as a miss. Falling through to a weaker strategy (pool, service account) while ALISE is
down would hand a user who linked their site account some other account, with other files and quotas, and do so
silently; refusing tells them to retry. For the same reason a result that fails the safety check (root, the
SlurmUser, a system or unknown account) is an error, not a miss: it means misconfiguration or an attack.

Strategies: StaticMap (file), Alise (account linking service), Pool (persistent pool accounts), ClaimTemplate
(username built from claims; unsafe where the claim is not unique) and ServiceAccount (one account per VO).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pwd
import random
import re
import string
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml

from slurmlink.core.errors import SlurmlinkError

from .entitlements import Decision
from .pool import DEFAULT_POOL_URL, PoolExhausted, PoolStore

log = logging.getLogger(__name__)

# POSIX portable user names as useradd accepts them by default, lower case only, at most 32 characters.
# fullmatch, not `$`: `$` also matches before a trailing newline.
USERNAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class MappingError(SlurmlinkError):
    """No account may be used for this request. `message` is a sentence for the user and the audit log."""

    default_reason = "NoAccountMapping"


@dataclass(frozen=True)
class MappingResult:
    username: str
    strategy: str
    reason: str


@dataclass(frozen=True)
class MappingRequest:
    """What a strategy sees. `account_ok(name)` says whether a name would pass the safety check (pools use it
    to skip accounts that do not exist or are not allowed, instead of assigning them and failing forever)."""

    issuer: str
    subject: str
    claims: Mapping[str, Any]
    decision: Decision
    account_ok: Callable[[str], bool] = field(default=lambda _name: True, compare=False)


class Strategy:
    """One link of the chain. `name` is what VO settings (`strategies: [...]`) and results refer to."""

    name: str = "strategy"
    description: str = ""

    async def resolve(self, request: MappingRequest) -> str | None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections and pools; the default has none."""


# ------------------------------------------------------------------------------------------------ safety


@dataclass(frozen=True)
class AccountPolicy:
    """What a mapping result must satisfy. The account must exist in NSS (`lookup`, i.e. pwd.getpwnam)."""

    min_uid: int = 1000
    slurm_user: str = "slurm"
    deny_users: frozenset[str] = frozenset({"nobody", "nfsnobody"})
    deny_uids: frozenset[int] = frozenset({65534})  # the overflow uid is "nobody" under any name
    lookup: Callable[[str], pwd.struct_passwd] = field(default=pwd.getpwnam, compare=False)

    def check(self, username: str, subject: str = "?") -> pwd.struct_passwd:
        """The account's passwd entry, or MappingError saying which rule refused it."""
        who = f"mapping for {subject}"
        # The pattern comes first: a hostile string never reaches NSS (which may be LDAP).
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise MappingError(f"{who} gave {_show(username)}, which is not a valid user name "
                               f"(lower-case letters, digits, _ and -, at most 32)")
        if username == "root":
            raise MappingError(f"{who} gave root")
        if username in self.deny_users:
            raise MappingError(f"{who} gave {username}, which is on the deny list")
        entry = self._lookup(username)
        if entry is None:
            raise MappingError(f"user {username} does not exist on this system")
        if entry.pw_name != username:
            # e.g. a case-insensitive NSS backend: the job would run as a name the policy never checked.
            raise MappingError(f"{who} gave {username}, but the system resolves it to {_show(entry.pw_name)}")
        if entry.pw_uid == 0:
            raise MappingError(f"{who} gave root ({username} has uid 0)")
        if username == self.slurm_user or entry.pw_uid == self._slurm_uid():
            raise MappingError(f"{who} gave the SlurmUser ({username})")
        if entry.pw_uid in self.deny_uids:
            raise MappingError(f"{who} gave {username} (uid {entry.pw_uid}), which is on the deny list")
        if entry.pw_uid < self.min_uid:
            raise MappingError(f"{who} gave {username} (uid {entry.pw_uid}), a system account "
                               f"below the minimum uid {self.min_uid}")
        return entry

    def allows(self, username: str) -> bool:
        try:
            self.check(username)
        except MappingError:
            return False
        return True

    def _lookup(self, username: str) -> pwd.struct_passwd | None:
        try:
            return self.lookup(username)
        except KeyError:
            return None

    def _slurm_uid(self) -> int | None:
        entry = self._lookup(self.slurm_user) if self.slurm_user else None
        return entry.pw_uid if entry is not None else None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------------------ mapper


class Mapper:
    """The chain. VO settings may narrow it: `strategies: [static, service]` keeps only those, in chain order."""

    def __init__(self, strategies: Sequence[Strategy], accounts: AccountPolicy | None = None) -> None:
        names = [s.name for s in strategies]
        if not strategies:
            raise ValueError("the mapping chain needs at least one strategy")
        if len(set(names)) != len(names):
            raise ValueError(f"mapping strategy names must be unique, got {names}")
        self.strategies = tuple(strategies)
        self.accounts = accounts or AccountPolicy()

    def check_vo_settings(self, vo: str, settings: Mapping[str, Any]) -> None:
        """Raise ValueError if a VO's settings name strategies that are not configured (call at start)."""
        self._chain_for(vo, settings, error=ValueError)

    async def map(self, issuer: str, subject: str, claims: Mapping[str, Any], decision: Decision) -> MappingResult:
        if not decision.allowed:
            raise MappingError(f"not authorised: {decision.reason}")
        chain = self._chain_for(decision.vo, decision.vo_settings, error=MappingError)
        request = MappingRequest(issuer, subject, claims, decision, self.accounts.allows)
        for strategy in chain:
            try:
                username = await strategy.resolve(request)
            except MappingError:
                raise
            except Exception as exc:
                # A bug or an unexpected library error must refuse, not fall through to the next strategy.
                log.exception("mapping strategy %s failed", strategy.name)
                raise MappingError(f"mapping strategy {strategy.name} failed ({type(exc).__name__})") from exc
            if username is None:
                continue
            await asyncio.to_thread(self.accounts.check, username, subject)  # NSS may block (LDAP)
            reason = f"{strategy.description or strategy.name} mapped {subject} to {username}"
            return MappingResult(username, strategy.name, reason)
        tried = ", ".join(s.name for s in chain)
        raise MappingError(f"no local account for {subject} from {issuer} (tried {tried})")

    async def aclose(self) -> None:
        for strategy in self.strategies:
            await strategy.aclose()

    def _chain_for(self, vo: str | None, settings: Mapping[str, Any],
                   error: type[Exception]) -> tuple[Strategy, ...]:
        wanted = settings.get("strategies")
        if wanted is None:
            return self.strategies
        if isinstance(wanted, str):
            wanted = [wanted]
        if not isinstance(wanted, Sequence) or not all(isinstance(w, str) for w in wanted):
            raise error(f"VO {vo}: setting 'strategies' must be a list of strategy names")
        unknown = sorted(set(wanted) - {s.name for s in self.strategies})
        if unknown:
            raise error(f"VO {vo} names mapping strategies {unknown} that are not configured "
                        f"(configured: {', '.join(s.name for s in self.strategies)})")
        return tuple(s for s in self.strategies if s.name in wanted)


# ------------------------------------------------------------------------------------------------ static map


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
            entries = self._parse_yaml(text) if self.file_format == "yaml" else self._parse_lines(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
            self._error = f"static map {self.path} is invalid: {exc}"
            log.error("%s", self._error)
            return
        self._entries, self._error = entries, None
        log.info("static map %s loaded: %d entries", self.path, len(entries))

    def _parse_yaml(self, text: str) -> dict[tuple[str, str], str]:
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
            self._add(entries, item["issuer"], item["subject"], item["username"], f"entry {i}")
        return entries

    def _parse_lines(self, text: str) -> dict[tuple[str, str], str]:
        entries: dict[tuple[str, str], str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 3:
                raise ValueError(f"line {number}: expected 'issuer subject username'")
            self._add(entries, fields[0], fields[1], fields[2], f"line {number}")
        return entries

    @staticmethod
    def _add(entries: dict[tuple[str, str], str], issuer: str, subject: str, username: str, where: str) -> None:
        if not USERNAME_RE.fullmatch(username):
            raise ValueError(f"{where}: {_show(username)} is not a valid user name")
        key = (issuer, subject)
        if key in entries and entries[key] != username:
            raise ValueError(f"{where}: {subject} from {issuer} is mapped twice ({entries[key]}, {username})")
        entries[key] = username


# ------------------------------------------------------------------------------------------------ ALISE


_APIKEY_IN_URL = re.compile(r"(apikey=)[^&\s\"']*")


class _RedactApikey(logging.Filter):
    """httpx logs every request URL at INFO, and ALISE wants its apikey in the query string: mask it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_APIKEY_IN_URL.sub(r"\1***", str(a)) if "apikey=" in str(a) else a
                                for a in record.args)
        return True


def _install_httpx_redaction() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactApikey) for f in httpx_log.filters):
        httpx_log.addFilter(_RedactApikey())


class AliseClient:
    """Client of ALISE's mapping API (`GET /api/v1/target/{site}/mapping/issuer/{sha1(iss)}/user/{sub}`).

    `lookup()` returns the linked internal username, None when ALISE says `not-mapped`, and raises MappingError
    for everything else: bad apikey, transport errors and timeouts (after bounded retries), 5xx, unexpected
    statuses, and ALISE's habit of answering internal exceptions with HTTP 200 `{"error": ...}`. That last one
    is an error, not a miss: ALISE catches every exception (database unreadable included) that way, so it
    cannot be told apart from "this person linked an account we failed to read".
    Hits are cached for `cache_ttl`, misses for the shorter `miss_ttl` (a user who just linked waits at most
    that long); errors are never cached. A client belongs to one event loop (its connection pool does).
    """

    def __init__(self, base_url: str, site: str, apikey: str, *, timeout: float = 5.0, retries: int = 1,
                 cache_ttl: float = 300.0, miss_ttl: float = 30.0, cache_size: int = 10_000,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"ALISE base URL must be http(s): {base_url!r}")
        if not site or not apikey:
            raise ValueError("ALISE needs a site name and an apikey")
        self.base_url = base_url.rstrip("/")
        self.site = site
        self._apikey = apikey
        self.retries = retries
        self.cache_ttl = cache_ttl
        self.miss_ttl = miss_ttl
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], tuple[float, str | None]] = OrderedDict()
        _install_httpx_redaction()
        # No redirects: an apikey must not follow a Location header anywhere.
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport,
                                       headers={"Accept": "application/json"})

    def __repr__(self) -> str:  # never the apikey
        return f"AliseClient({self.base_url!r}, site={self.site!r})"

    def mapping_path(self, issuer: str, subject: str) -> str:
        """The issuer goes as sha1 hex (ALISE's documented alternative to double URL-encoding it). The subject is
        quote_plus()ed and then percent-encoded once more: Starlette decodes the path before ALISE calls
        unquote_plus() on it again, so with a single encoding a '+' or '%' in a subject would be mangled
        (a single encoding only works for subjects like Check-in's `<hex>@egi.eu`)."""
        iss_hash = hashlib.sha1(issuer.encode(), usedforsecurity=False).hexdigest()
        sub = urllib.parse.quote(urllib.parse.quote_plus(subject), safe="")
        return f"/api/v1/target/{urllib.parse.quote(self.site, safe='')}/mapping/issuer/{iss_hash}/user/{sub}"

    async def lookup(self, issuer: str, subject: str) -> str | None:
        key = (issuer, subject)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            self._cache.move_to_end(key)
            return cached[1]
        username = self._interpret(await self._get(self.mapping_path(issuer, subject)), subject)
        ttl = self.cache_ttl if username is not None else self.miss_ttl
        if ttl > 0:
            self._cache[key] = (time.monotonic() + ttl, username)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return username

    async def check(self) -> None:
        """Raise MappingError unless ALISE answers and accepts the apikey (for start-up and health checks)."""
        path = f"/api/v1/target/{urllib.parse.quote(self.site, safe='')}/validate_apikey/" \
               f"{urllib.parse.quote(self._apikey, safe='')}"
        response = await self._get(path, with_key=False)
        if response.status_code != 200 or _json(response).get("apikey") is not True:
            raise MappingError(f"ALISE at {self.base_url} does not accept the configured apikey for site {self.site}")

    def clear_cache(self) -> None:
        self._cache.clear()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, with_key: bool = True) -> httpx.Response:
        params = {"apikey": self._apikey} if with_key else None
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(0.2 * attempt + random.uniform(0, 0.1))  # noqa: S311 - jitter
            try:
                response = await self._http.get(self.base_url + path, params=params)
            except httpx.TimeoutException:
                last = "timed out"
                continue
            except httpx.TransportError as exc:
                last = f"unreachable ({type(exc).__name__})"
                continue
            if response.status_code >= 500:
                last = f"answered HTTP {response.status_code}"
                continue
            return response
        raise MappingError(f"ALISE at {self.base_url} {last}; cannot tell which account is linked, refusing")

    def _interpret(self, response: httpx.Response, subject: str) -> str | None:
        where = f"ALISE at {self.base_url}"
        body = _json(response)
        if response.status_code == 401:
            kinds = {d.get("type") for d in body.get("detail", []) if isinstance(d, dict)} \
                if isinstance(body.get("detail"), list) else set()
            if "not-mapped" in kinds:
                return None
            if "invalid" in kinds:
                raise MappingError(f"{where} rejected the apikey for site {self.site}")
            raise MappingError(f"{where} refused the lookup (HTTP 401)")
        if response.status_code != 200:
            raise MappingError(f"{where} answered HTTP {response.status_code} (check base URL and site)")
        if "error" in body:
            raise MappingError(f"{where} reported an internal error: {str(body['error'])[:200]}")
        internal = body.get("internal")
        username = internal.get("username") if isinstance(internal, dict) else None
        if not isinstance(username, str) or not username:
            # Linked, but no usable internal name (e.g. the internal OP lacks its username_claim): refusing keeps
            # the user off an account other than the one they linked.
            raise MappingError(f"{where} has a linked account for {subject} but no internal username")
        external = body.get("external")
        if isinstance(external, list) and external and not any(
                isinstance(e, dict) and e.get("sub") == subject for e in external):
            raise MappingError(f"{where} answered for a different identity than {subject}")
        return username


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Alise(Strategy):
    def __init__(self, client: AliseClient, *, name: str = "alise") -> None:
        self.name = name
        self.client = client
        self.description = f"ALISE site {client.site}"

    async def resolve(self, request: MappingRequest) -> str | None:
        return await self.client.lookup(request.issuer, request.subject)

    async def aclose(self) -> None:
        await self.client.aclose()


# ------------------------------------------------------------------------------------------------ pool


class Pool(Strategy):
    """Pool accounts `prefix` + zero-padded number (`egi001`..`egi100`), assigned once and kept (see pool.py).

    Candidates that fail the safety check (not created yet, uid too low, ...) are skipped, so a partly created
    pool hands out the accounts that exist. Keyed by (issuer, subject).
    """

    def __init__(self, prefix: str = "egi", digits: int = 3, first: int = 1, last: int = 100, *,
                 store: PoolStore | None = None, url: str = DEFAULT_POOL_URL, name: str = "pool") -> None:
        if not 1 <= first <= last < 10 ** digits:
            raise ValueError(f"pool {prefix}: need 1 <= first <= last < 10**digits")
        self.candidates = [f"{prefix}{i:0{digits}d}" for i in range(first, last + 1)]
        bad = [c for c in (self.candidates[0], self.candidates[-1]) if not USERNAME_RE.fullmatch(c)]
        if bad:
            raise ValueError(f"pool {prefix}: {bad[0]!r} is not a valid user name")
        self.name = name
        self.pool = prefix
        self.store = store if store is not None else PoolStore(url)
        self.description = f"pool {self.candidates[0]}..{self.candidates[-1]}"

    async def resolve(self, request: MappingRequest) -> str | None:
        try:
            return await asyncio.to_thread(self.store.assign, self.pool, request.issuer, request.subject,
                                           self.candidates, request.account_ok)
        except PoolExhausted:
            raise MappingError(f"no free pool account ({self.description})") from None
        except MappingError:
            raise
        except Exception as exc:
            log.exception("pool %s: database error", self.pool)
            raise MappingError(f"pool account database unavailable ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        self.store.dispose()


# ------------------------------------------------------------------------------------------------ template


# Claims Check-in documents as unique and stable per person; anything else can collide.
UNIQUE_CLAIMS = frozenset({"sub", "voperson_id", "eduperson_unique_id"})


class ClaimTemplate(Strategy):
    """A username from claims, e.g. `{preferred_username}` or `egi_{voperson_id:.8}`.

    Unsafe unless the template is built from a unique claim without truncation: Check-in says
    `preferred_username` "MUST NOT" be relied upon to be unique, so two people could get one account. Warnings
    are logged at start and listed in `warnings`. A missing or non-string claim is a miss.
    """

    def __init__(self, template: str, *, lowercase: bool = False, name: str = "template") -> None:
        self.name = name
        self.template = template
        self.lowercase = lowercase
        self.description = f"claim template {template!r}"
        self.fields: list[str] = []
        warnings: list[str] = []
        for _text, field_name, spec, conversion in string.Formatter().parse(template):
            if field_name is None:
                continue
            # Plain claim names only: no attribute or index access through the format mini-language.
            if not field_name.isidentifier() or conversion:
                raise ValueError(f"claim template {template!r}: {{{field_name}}} must be a plain claim name")
            self.fields.append(field_name)
            if field_name not in UNIQUE_CLAIMS:
                warnings.append(f"claim {field_name} is not guaranteed unique: two people may share an account")
            elif spec and "." in spec:
                warnings.append(f"truncating {field_name} ({spec}) can make two people collide")
        if not self.fields:
            raise ValueError(f"claim template {template!r} uses no claim")
        if lowercase:
            warnings.append("lower-casing can make two people collide")
        self.warnings = tuple(warnings)
        for warning in self.warnings:
            log.warning("mapping template %r is unsafe: %s", template, warning)

    async def resolve(self, request: MappingRequest) -> str | None:
        values: dict[str, str] = {}
        for name in self.fields:
            value = request.claims.get(name)
            if not isinstance(value, str) or not value:
                return None
            values[name] = value
        try:
            username = self.template.format_map(values)
        except (ValueError, TypeError) as exc:
            raise MappingError(f"claim template {self.template!r} failed: {exc}") from exc
        return username.lower() if self.lowercase else username


# ------------------------------------------------------------------------------------------------ service


class ServiceAccount(Strategy):
    """One shared account per VO: the VO's `service_account` setting, else `default` (None: no match)."""

    def __init__(self, default: str | None = None, *, setting: str = "service_account",
                 name: str = "service") -> None:
        self.name = name
        self.default = default
        self.setting = setting
        self.description = "VO service account"

    async def resolve(self, request: MappingRequest) -> str | None:
        account = request.decision.vo_settings.get(self.setting, self.default)
        if account is not None and not isinstance(account, str):
            raise MappingError(f"VO {request.decision.vo}: setting {self.setting} must be a user name")
        return account or None
