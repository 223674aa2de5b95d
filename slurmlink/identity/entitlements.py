"""Authorisation policy over AARC-G002 entitlements (`eduperson_entitlement`, as EGI Check-in releases them).

A Check-in VO membership arrives as `urn:mace:egi.eu:group:<vo>[:<subgroup>...]:role=<role>#aai.egi.eu`.
`aarc_entitlement` parses these, but its `satisfies()` ignores the `#authority` and lets subgroup membership
count for the parent group, so matching is done here on the parsed parts: namespace, group, subgroups, role and
authority are each compared explicitly. Anything that does not parse is skipped, never trusted, never a crash.
An entitlement counts only as written: `aarc_entitlement` percent-decodes (`vo%2Eexample` reads as `vo.example`),
so a value whose parsed parts, written out again, are not exactly the value received is skipped too.

A `Decision` names the VO that let the caller in and carries that VO's settings (for example which mapping
strategies or which service account apply), so the mapper never has to re-derive the VO from claims.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import aarc_entitlement
from pydantic import Field, model_validator

from slurmlink.config import Strict

log = logging.getLogger(__name__)

EMPTY_SETTINGS: Mapping[str, Any] = MappingProxyType({})
DEFAULT_AUTHORITY = "aai.egi.eu"
DEFAULT_NAMESPACE = "urn:mace:egi.eu"
# AARC-G002: an entitlement without `role=` states plain membership, i.e. the `member` role.
IMPLICIT_ROLE = "member"

Match = Literal["any", "all"]
GroupRoles = tuple[tuple[str, tuple[str, ...]], ...]  # (("vo", roles), ("vo:sub", roles)): Decision.groups


@dataclass(frozen=True)
class Decision:
    """The outcome of a policy check. `reason` is a sentence for people (pod events, audit log)."""

    allowed: bool
    reason: str
    vo: str | None = None
    vo_settings: Mapping[str, Any] = field(default_factory=lambda: EMPTY_SETTINGS, compare=False)
    # every admitted VO the caller is a member of, in the policy's order (`vo` first)
    vos: tuple[str, ...] = field(default=(), compare=False)
    # the roles held in each group of those VOs, trusted entitlements only: (("vo", roles), ("vo:sub", roles))
    groups: GroupRoles = field(default=(), compare=False)


@dataclass(frozen=True)
class VoRule:
    """One VO the site admits. `roles=None` means the policy's default roles; `settings` travel to the mapper."""

    name: str
    roles: tuple[str, ...] | None = None
    settings: Mapping[str, Any] = field(default_factory=lambda: EMPTY_SETTINGS, compare=False)

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or "#" in self.name:
            raise ValueError(f"VO name {self.name!r} is not a bare group name (give e.g. 'vo.example.org')")
        if self.roles is not None and not self.roles:
            raise ValueError(f"VO {self.name}: roles cannot be an empty list (omit it for the default)")
        # A read-only copy: the same mapping is shared by every Decision for this VO.
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))


@dataclass(frozen=True)
class _Entitlement:
    """The parts of one group entitlement that the policy compares."""

    namespace: str
    group: str
    subgroups: tuple[str, ...]
    role: str
    authority: str | None


@dataclass(frozen=True)
class EntitlementPolicy:
    """Who may use the site.

    vos: admitted VOs, in priority order (with match `any` the first one the caller belongs to wins).
    match: `any` VO is enough, or `all` of them are required (then the first VO's settings apply).
    roles: roles required in a VO, all of them (Check-in always also releases `role=member`).
    subgroups_count: whether membership of `vo:sub` alone counts as membership of `vo`.
    authority / namespace: the only `#authority` and URN namespace trusted (Check-in's by default).
    assurance: values required in `eduperson_assurance`, compared exactly (list every acceptable value: a
    higher REFEDS/EGI level is not assumed to imply a lower one); `assurance_match` says any or all.
    """

    vos: tuple[VoRule, ...]
    match: Match = "any"
    roles: tuple[str, ...] = (IMPLICIT_ROLE,)
    subgroups_count: bool = False
    authority: str = DEFAULT_AUTHORITY
    namespace: str = DEFAULT_NAMESPACE
    assurance: tuple[str, ...] = ()
    assurance_match: Match = "any"
    entitlement_claim: str = "eduperson_entitlement"
    assurance_claim: str = "eduperson_assurance"

    def __post_init__(self) -> None:
        # Deny by default: an empty VO list would otherwise read as "nobody" in one place and "everyone" in another.
        if not self.vos:
            raise ValueError("the entitlement policy needs at least one VO")
        names = [v.name for v in self.vos]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"VO listed twice in the entitlement policy: {twice}")
        if self.match not in ("any", "all") or self.assurance_match not in ("any", "all"):
            raise ValueError("match and assurance_match must be 'any' or 'all'")
        if not self.roles:
            raise ValueError("roles cannot be empty (the default is ['member'])")
        if not self.authority or not self.namespace.startswith("urn:"):
            raise ValueError("authority must be set and namespace must look like 'urn:mace:egi.eu'")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EntitlementPolicy:
        """Build from configuration (ValueError if it is not a valid `policy:` section)."""
        return PolicySection.model_validate(data).build()

    def decide(self, claims: Mapping[str, Any]) -> Decision:
        entitlements = _parse_entitlements(claim_values(claims, self.entitlement_claim))
        results = [(rule, self._check_vo(rule, entitlements)) for rule in self.vos]
        passed = [(rule, why) for rule, (ok, why) in results if ok]
        failed = [why for _, (ok, why) in results if not ok]
        if self.match == "all" and failed:
            return Decision(False, "; ".join(failed))
        if not passed:
            return Decision(False, "; ".join(failed))
        rule, why = passed[0]
        if self.match == "all":
            why = "; ".join(w for _, w in passed)
        missing = self._missing_assurance(claims)
        if missing:
            return Decision(False, missing, rule.name, rule.settings)
        vos = tuple(r.name for r, _ in passed)
        return Decision(True, why, rule.name, rule.settings, vos, self._groups(vos, entitlements))

    def _groups(self, vos: tuple[str, ...], entitlements: Sequence[_Entitlement]) -> GroupRoles:
        """Roles held per group path of the admitted VOs (for per-group/role site policy)."""
        held: dict[str, set[str]] = {}
        for e in entitlements:
            if e.namespace == self.namespace and e.authority == self.authority and e.group in vos:
                held.setdefault(":".join((e.group, *e.subgroups)), set()).add(e.role)
        return tuple((path, tuple(sorted(roles))) for path, roles in sorted(held.items()))

    def _check_vo(self, rule: VoRule, entitlements: Sequence[_Entitlement]) -> tuple[bool, str]:
        vo = rule.name
        roles = set(rule.roles or self.roles)
        mine = [e for e in entitlements if e.namespace == self.namespace and e.group == vo]
        trusted = [e for e in mine if e.authority == self.authority]
        # Roles are only combined within one group path: a manager of vo:sub is not a manager of vo.
        held: dict[tuple[str, ...], set[str]] = {}
        for e in trusted:
            held.setdefault(e.subgroups, set()).add(e.role)
        if roles <= held.get((), set()):
            return True, f"member of {vo}"
        if self.subgroups_count:
            for path, path_roles in held.items():
                if path and roles <= path_roles:
                    return True, f"member of {vo} through subgroup {':'.join((vo, *path))}"
        # Denied: say the most specific thing that went wrong.
        foreign = sorted({e.authority or "" for e in mine if e.authority != self.authority})
        if foreign and not trusted:
            shown = ", ".join(a or "(none)" for a in foreign)
            return False, f"entitlement for {vo} has authority {shown}, expected {self.authority}"
        if () in held:
            lacking = ", ".join(sorted(roles - held[()]))
            return False, f"member of {vo} but without role {lacking}"
        if held:
            if self.subgroups_count:
                return False, f"no subgroup of {vo} grants role {', '.join(sorted(roles))}"
            return False, f"only a member of a subgroup of {vo}"
        return False, f"not a member of {vo}"

    def _missing_assurance(self, claims: Mapping[str, Any]) -> str | None:
        if not self.assurance:
            return None
        have = set(claim_values(claims, self.assurance_claim))
        if self.assurance_match == "any":
            if have.isdisjoint(self.assurance):
                return f"assurance {' or '.join(self.assurance)} required"
            return None
        lacking = [a for a in self.assurance if a not in have]
        return f"assurance {' and '.join(lacking)} required" if lacking else None


class VoSection(Strict):
    name: str = Field(description="the VO's name")
    roles: str | list[str] | None = Field(default=None, description=(
        "roles required in this VO; unset: the policy's `roles`"))
    settings: dict[str, Any] = Field(default_factory=dict, description=(
        "for the mapping: `strategies` (the names of the steps tried for this VO), `service_account`"))


class PolicySection(Strict):
    """The `policy:` section, checked when the file is loaded; see EntitlementPolicy for what each key means."""

    vos: list[str | VoSection] = Field(description=(
        "VOs whose members may use the site, in priority order: names, or `{name, roles, settings}`"))
    match: Literal["any", "all"] = Field(default="any", description="membership of `any` or of `all` of the VOs")
    roles: str | list[str] = Field(default_factory=lambda: [IMPLICIT_ROLE], description="roles required in the VO")
    subgroups_count: bool = Field(default=False, description="whether membership of `vo:sub` counts for `vo`")
    authority: str = Field(default=DEFAULT_AUTHORITY, description="the entitlement's `#authority`, checked explicitly")
    namespace: str = Field(default=DEFAULT_NAMESPACE, description="the only URN namespace of entitlements trusted")
    assurance: str | list[str] = Field(default_factory=list, description="`eduperson_assurance` values required")
    assurance_match: Literal["any", "all"] = Field(default="any", description="`any` or `all` of `assurance`")
    entitlement_claim: str = Field(default="eduperson_entitlement", description="the claim holding the entitlements")
    assurance_claim: str = Field(default="eduperson_assurance", description="the claim holding the assurance values")

    @model_validator(mode="after")
    def _valid(self) -> PolicySection:
        self.build()  # the policy's own checks (VO names, duplicates, roles, namespace)
        return self

    def build(self) -> EntitlementPolicy:
        vos = tuple(VoRule(vo) if isinstance(vo, str) else
                    VoRule(vo.name, _strings(vo.roles) if vo.roles is not None else None, vo.settings)
                    for vo in self.vos)
        return EntitlementPolicy(
            vos=vos, match=self.match, roles=_strings(self.roles), subgroups_count=self.subgroups_count,
            authority=self.authority, namespace=self.namespace, assurance=_strings(self.assurance),
            assurance_match=self.assurance_match, entitlement_claim=self.entitlement_claim,
            assurance_claim=self.assurance_claim)


def _strings(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def claim_values(claims: Mapping[str, Any], name: str) -> list[str]:
    """A multi-valued claim as a list of strings: OPs send a list, a single string, or nothing."""
    value = claims.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        return [v for v in value if isinstance(v, str)]
    return []


def _parse_entitlements(values: Iterable[str]) -> list[_Entitlement]:
    parsed: list[_Entitlement] = []
    skipped = 0
    for raw in values:
        try:
            ent = aarc_entitlement.G002(raw, strict=False)
        except aarc_entitlement.Error:
            skipped += 1
            continue
        subgroups = tuple(ent.subgroups or ())
        # aarc_entitlement reads `vo:role=#auth` as subgroup "role="; such a value is malformed, not a subgroup.
        if any("=" in s for s in subgroups):
            skipped += 1
            continue
        namespace = ":".join(("urn", ent.namespace_id, ent.delegated_namespace, *(ent.subnamespaces or ())))
        if _written_out(namespace, ent.group, subgroups, ent.role, ent.group_authority) != raw:
            skipped += 1  # decoded or normalised by the parser: not what the issuer wrote
            continue
        parsed.append(_Entitlement(namespace, ent.group, subgroups, ent.role or IMPLICIT_ROLE, ent.group_authority))
    if skipped:
        # Counted, not echoed: the values are the caller's data and may be long or hostile.
        log.debug("skipped %d entitlement value(s) that are not AARC-G002 group entitlements", skipped)
    return parsed



def _written_out(namespace: str, group: str, subgroups: tuple[str, ...], role: str | None,
                 authority: str | None) -> str:
    """An entitlement as AARC-G002 writes its parts, with nothing encoded. Pure."""
    value = ":".join((namespace, "group", group, *subgroups))
    value += f":role={role}" if role else ""
    return value + (f"#{authority}" if authority else "")
