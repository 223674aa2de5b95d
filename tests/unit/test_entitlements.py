"""Entitlement policy: VO membership as AARC-G002 entitlements, authority checked, readable reasons."""

from __future__ import annotations

from typing import Any

import pytest

from slurmlink.identity.entitlements import Decision, EntitlementPolicy, VoRule, claim_values

VO = "vo.example.org"


def ent(group: str, role: str | None = "member", authority: str | None = "aai.egi.eu",
        namespace: str = "urn:mace:egi.eu") -> str:
    value = f"{namespace}:group:{group}"
    if role is not None:
        value += f":role={role}"
    if authority is not None:
        value += f"#{authority}"
    return value


def claims(*entitlements: str, assurance: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"sub": "u@egi.eu", "eduperson_entitlement": list(entitlements)}
    if assurance is not None:
        out["eduperson_assurance"] = assurance
    return out


def policy(*vos: str | VoRule, **kwargs: Any) -> EntitlementPolicy:
    rules = tuple(v if isinstance(v, VoRule) else VoRule(v) for v in (vos or (VO,)))
    return EntitlementPolicy(vos=rules, **kwargs)


def test_member_is_allowed_and_names_the_vo() -> None:
    d = policy().decide(claims(ent(VO)))
    assert d == Decision(True, f"member of {VO}", VO)


def test_single_string_claim_and_tuple_claim_are_accepted() -> None:
    assert policy().decide({"eduperson_entitlement": ent(VO)}).allowed
    assert policy().decide({"eduperson_entitlement": (ent(VO),)}).allowed


@pytest.mark.parametrize("value", [None, 5, {"a": 1}, b"bytes", [], [None, 3, {"x": 1}]])
def test_missing_or_odd_claim_is_not_a_member(value: Any) -> None:
    d = policy().decide({"eduperson_entitlement": value})
    assert d == Decision(False, f"not a member of {VO}")


def test_not_a_member() -> None:
    d = policy().decide(claims(ent("vo.other.org")))
    assert not d.allowed
    assert d.reason == f"not a member of {VO}"
    assert d.vo is None


def test_wrong_authority_is_refused_even_though_aarc_entitlement_would_accept_it() -> None:
    d = policy().decide(claims(ent(VO, authority="other.org")))
    assert not d.allowed
    assert d.reason == f"entitlement for {VO} has authority other.org, expected aai.egi.eu"


def test_missing_authority_is_refused() -> None:
    d = policy().decide(claims(ent(VO, authority=None)))
    assert d.reason == f"entitlement for {VO} has authority (none), expected aai.egi.eu"


def test_authority_with_trailing_junk_is_refused() -> None:
    assert not policy().decide(claims(ent(VO) + " extra")).allowed


def test_configurable_authority() -> None:
    p = policy(authority="aai-demo.egi.eu")
    assert p.decide(claims(ent(VO, authority="aai-demo.egi.eu"))).allowed
    expected = f"entitlement for {VO} has authority aai.egi.eu, expected aai-demo.egi.eu"
    assert p.decide(claims(ent(VO))).reason == expected


def test_other_namespace_is_not_membership() -> None:
    d = policy().decide(claims(ent(VO, namespace="urn:geant:example.org")))
    assert d.reason == f"not a member of {VO}"
    p = policy(namespace="urn:geant:example.org")
    assert p.decide(claims(ent(VO, namespace="urn:geant:example.org"))).allowed


def test_subgroup_membership_does_not_count_by_default() -> None:
    d = policy().decide(claims(ent(f"{VO}:sub")))
    assert not d.allowed
    assert d.reason == f"only a member of a subgroup of {VO}"


def test_subgroup_membership_counts_when_configured() -> None:
    d = policy(subgroups_count=True).decide(claims(ent(f"{VO}:sub:deeper")))
    assert d.allowed and d.vo == VO
    assert "through subgroup vo.example.org:sub:deeper" in d.reason


def test_required_roles_all_within_one_group_path() -> None:
    p = policy(roles=("member", "vm_operator"))
    assert p.decide(claims(ent(VO), ent(VO, role="vm_operator"))).allowed
    d = p.decide(claims(ent(VO)))
    assert d.reason == f"member of {VO} but without role vm_operator"
    # A subgroup manager is not a VO manager; roles are not pooled across group paths.
    r = policy(roles=("manager",))
    assert not r.decide(claims(ent(VO), ent(f"{VO}:sub", role="manager"))).allowed
    q = policy(roles=("member", "manager"), subgroups_count=True)
    assert not q.decide(claims(ent(VO), ent(f"{VO}:sub", role="manager"))).allowed
    assert q.decide(claims(ent(f"{VO}:sub"), ent(f"{VO}:sub", role="manager"))).allowed


def test_entitlement_without_role_means_member() -> None:
    assert policy().decide(claims(ent(VO, role=None))).allowed
    assert not policy(roles=("vm_operator",)).decide(claims(ent(VO, role=None))).allowed


def test_per_vo_roles_override_the_default() -> None:
    p = policy(VoRule(VO, roles=("vm_operator",)), "vo.b.org")
    assert not p.decide(claims(ent(VO))).allowed
    assert p.decide(claims(ent(VO, role="vm_operator"))).vo == VO


def test_malformed_values_are_skipped_not_fatal() -> None:
    junk = ["garbage", "", "URN:MACE:EGI.EU:group:vo.example.org:role=member#aai.egi.eu",
            "urn:mace:egi.eu:res:rcauth#aai.egi.eu", f"urn:mace:egi.eu:group:{VO}:role=#aai.egi.eu",
            "urn:mace:egi.eu:group:" + "x" * 10_000, "\x00\n#aai.egi.eu"]
    assert not policy().decide(claims(*junk)).allowed
    assert policy().decide(claims(*junk, ent(VO))).allowed


def test_match_any_takes_the_first_configured_vo_and_its_settings() -> None:
    p = policy(VoRule("vo.a.org", settings={"service_account": "svc_a"}),
               VoRule("vo.b.org", settings={"service_account": "svc_b"}))
    d = p.decide(claims(ent("vo.b.org"), ent("vo.a.org")))
    assert (d.allowed, d.vo, d.vo_settings["service_account"]) == (True, "vo.a.org", "svc_a")
    d = p.decide(claims(ent("vo.b.org")))
    assert (d.vo, d.vo_settings["service_account"]) == ("vo.b.org", "svc_b")


def test_match_any_denial_lists_every_vo() -> None:
    d = policy("vo.a.org", "vo.b.org").decide(claims(ent("vo.b.org", authority="evil.org")))
    assert d.reason == ("not a member of vo.a.org; "
                        "entitlement for vo.b.org has authority evil.org, expected aai.egi.eu")


def test_match_all() -> None:
    p = policy("vo.a.org", "vo.b.org", match="all")
    d = p.decide(claims(ent("vo.a.org"), ent("vo.b.org")))
    assert d.allowed and d.vo == "vo.a.org"
    d = p.decide(claims(ent("vo.a.org")))
    assert d == Decision(False, "not a member of vo.b.org")


def test_assurance_any_of() -> None:
    p = policy(assurance=("https://refeds.org/assurance/IAP/medium", "https://aai.egi.eu/LoA#Substantial"))
    assert p.decide(claims(ent(VO), assurance=["https://aai.egi.eu/LoA#Substantial"])).allowed
    assert p.decide(claims(ent(VO), assurance="https://refeds.org/assurance/IAP/medium")).allowed
    d = p.decide(claims(ent(VO), assurance=["https://aai.egi.eu/LoA#Low"]))
    assert not d.allowed and d.vo == VO
    assert d.reason == ("assurance https://refeds.org/assurance/IAP/medium or "
                        "https://aai.egi.eu/LoA#Substantial required")


def test_assurance_all_of() -> None:
    medium = "https://refeds.org/assurance/IAP/medium"
    p = policy(assurance=(medium, "https://refeds.org/assurance/ID/unique"), assurance_match="all")
    d = p.decide(claims(ent(VO), assurance=["https://refeds.org/assurance/ID/unique"]))
    assert d.reason == f"assurance {medium} required"
    assert p.decide(claims(ent(VO), assurance=[medium, "https://refeds.org/assurance/ID/unique"])).allowed


def test_membership_reason_wins_over_assurance() -> None:
    d = policy(assurance=("https://refeds.org/assurance/IAP/medium",)).decide(claims())
    assert d.reason == f"not a member of {VO}"


def test_settings_are_read_only() -> None:
    rule = VoRule(VO, settings={"strategies": ["pool"]})
    d = policy(rule).decide(claims(ent(VO)))
    with pytest.raises(TypeError):
        d.vo_settings["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize("bad", [
    {"vos": []}, {"vos": "vo"}, {"vos": [VO, VO]}, {"vos": [VO], "match": "some"}, {"vos": [VO], "roles": []},
    {"vos": [f"urn:mace:egi.eu:group:{VO}"]}, {"vos": [{"roles": ["member"]}]}, {"vos": [VO], "roles": 3},
])
def test_bad_configuration_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EntitlementPolicy.from_dict(bad)


def test_from_dict() -> None:
    p = EntitlementPolicy.from_dict({
        "vos": [VO, {"name": "vo.b.org", "roles": "vm_operator", "settings": {"strategies": ["service"]}}],
        "subgroups_count": True, "assurance": "https://aai.egi.eu/LoA#Substantial", "authority": "aai-dev.egi.eu"})
    assert p.vos[1] == VoRule("vo.b.org", ("vm_operator",))
    assert p.vos[1].settings == {"strategies": ["service"]}
    assert p.assurance == ("https://aai.egi.eu/LoA#Substantial",) and p.subgroups_count
    assert p.authority == "aai-dev.egi.eu"


def test_claim_values() -> None:
    assert claim_values({"a": "x"}, "a") == ["x"]
    assert claim_values({"a": ["x", 1, "y"]}, "a") == ["x", "y"]
    assert claim_values({}, "a") == []


@pytest.mark.parametrize("written", [
    "urn:mace:egi.eu:group:vo%2Eexample.org:role=member#aai.egi.eu",  # an encoded dot in the VO
    "urn:mace:egi.eu:group:vo%2eexample%2eorg:role=member#aai.egi.eu",
    "urn:mace:egi.eu:group:vo.example%2Eorg:role=member#aai.egi.eu",
    "urn%3Amace:egi.eu:group:vo.example.org:role=member#aai.egi.eu",  # an encoded colon in the namespace
    "urn:mace:egi.eu%3Agroup:vo.example.org:role=member#aai.egi.eu",
    "urn:mace:egi.eu:group:vo.example.org:role=%6Dember#aai.egi.eu",  # an encoded role
    "urn:mace:egi.eu:group:vo.example.org:role=member%23aai.egi.eu",  # an encoded '#'
    "urn:mace:egi.eu:group:vo.example.org:role=member#aai%2Eegi.eu",  # an encoded authority
    "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu\n",  # a trailing newline
    "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu ",
    " urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu",
    "URN:MACE:EGI.EU:group:vo.example.org:role=member#aai.egi.eu",
    "urn:mace:egi.eu:GROUP:vo.example.org:role=member#aai.egi.eu",
])
def test_an_entitlement_matches_only_as_written(written: str) -> None:
    decision = EntitlementPolicy(vos=(VoRule(VO),)).decide(claims(written))
    assert not decision.allowed, written


def test_an_encoded_colon_is_no_subgroup_nor_a_role() -> None:
    manager = EntitlementPolicy(vos=(VoRule(VO, roles=("manager",)),), subgroups_count=True)
    for written in (ent(f"{VO}%3Asub", role="manager"), ent(VO, role="member%3Arole=manager"),
                    f"urn:mace:egi.eu:group:{VO}%3Arole=manager#aai.egi.eu"):
        assert not manager.decide(claims(written)).allowed, written
    assert manager.decide(claims(ent(f"{VO}:sub", role="manager"))).allowed
