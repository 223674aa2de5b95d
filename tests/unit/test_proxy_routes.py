"""The proxy's routes are declared once: policy.RULES says what is reachable and what a service identity may do
with it; extensions.py answers each extension rule. The two must name the same routes."""

from __future__ import annotations

from typing import cast

from slurmlink.proxy import policy
from slurmlink.proxy.extensions import Extensions
from slurmlink.proxy.joblookup import JobLookup
from slurmlink.proxy.policy import ServiceAccess


def test_every_extension_rule_has_a_handler_and_every_handler_a_rule() -> None:
    extensions = Extensions(None, cast(JobLookup, None), None, lambda: "")
    assert set(extensions.routes()) == {rule.name for rule in policy.RULES if rule.extension}


def test_service_access_is_declared_for_the_methods_of_its_rule() -> None:
    for rule in policy.RULES:
        assert {method for method, _ in rule.service} <= rule.methods, rule.name
    job = policy.BY_NAME[policy.JOB]
    assert job.service_access("GET") is ServiceAccess.AS_ACCOUNT
    assert job.service_access("delete") is ServiceAccess.AS_JOB_OWNER
    assert policy.BY_NAME[policy.SUBMIT].service_access("POST") is ServiceAccess.REFUSED
