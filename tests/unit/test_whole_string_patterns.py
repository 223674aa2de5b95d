"""Every pattern that admits a pod's (or SLURM's) text matches the whole string: with `re.match`, a pattern
ending in "$" also admits a final newline, and "\\d" admits digits of every script. Names, uids and hosts from a
pod end up in job names, paths and the job script, so "web\\n" must be as invalid as "web;rm"."""

from __future__ import annotations

import re

import pytest

from slurmlink.core import kube, quantity
from slurmlink.core.errors import PodRejected
from slurmlink.slurm.commands import sacct, sbatch, squeue
from slurmlink.translate import probes
from slurmlink.translate.podspec import pod_ref

PATTERNS: list[tuple[str, re.Pattern[str], str]] = [
    ("DNS label", kube.DNS_LABEL, "web"),
    ("DNS subdomain", kube.DNS_SUBDOMAIN, "web.example"),
    ("uid", kube.UID, "0b7c1f2e-1"),
    ("sacct job id", sacct._JOB_ID, "42_3"),
    ("sbatch option name", sbatch._NAME, "SLURM_NAME"),
    ("probe host", probes._HOST, "localhost"),
    ("probe header name", probes._HEADER_NAME, "X-Token"),
    ("probe port name", probes._PORT_NAME, "http"),
    ("quantity", quantity._QUANTITY, "500Mi"),
    ("squeue exit code", squeue._EXIT_CODE, "3:0"),
]


@pytest.mark.parametrize(("what", "pattern", "valid"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_valid_text_matches_and_any_suffix_does_not(what: str, pattern: re.Pattern[str], valid: str) -> None:
    assert pattern.match(valid), what
    for suffix in ("\n", "\r\n", "\n;id", " "):
        assert pattern.match(valid + suffix) is None, (what, valid + suffix)


@pytest.mark.parametrize("digits", ["４２", "٤٢"])  # full-width, Arabic-Indic
def test_only_ascii_digits_are_digits(digits: str) -> None:
    assert sacct._JOB_ID.match(digits) is None
    assert squeue._EXIT_CODE.match(digits) is None
    assert quantity._QUANTITY.match(digits) is None


def test_a_pod_named_with_a_final_newline_is_refused() -> None:
    assert not kube.is_dns_label("web\n")


@pytest.mark.parametrize("field", ["namespace", "name", "uid"])
def test_a_pod_whose_name_namespace_or_uid_ends_in_a_newline_is_rejected(field: str) -> None:
    meta = {"namespace": "default", "name": "web", "uid": "0b7c1f2e-1"}
    pod_ref({"metadata": meta})  # valid as it is
    with pytest.raises(PodRejected, match=f"metadata.{field}"):
        pod_ref({"metadata": {**meta, field: meta[field] + "\n"}})
