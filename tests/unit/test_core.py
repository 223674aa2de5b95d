"""The bottom layer: SLURM states and exit codes, the pod <-> job naming, the exception root."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import slurmlink
from slurmlink.core import naming, states
from slurmlink.core.errors import PodRejected, SlurmlinkError


@pytest.mark.parametrize("raw, expected", [
    ("CANCELLED by 1001", "CANCELLED"), ("running+", "RUNNING"), ("", ""), (None, "UNKNOWN"),
    (["COMPLETED", "REQUEUED"], "COMPLETED"), ([], "UNKNOWN"),
])  # fmt: skip
def test_base_state(raw: object, expected: str) -> None:
    assert states.base_state(raw) == expected


def test_one_finished_set() -> None:
    assert {"REVOKED", "COMPLETED", "OUT_OF_MEMORY"} <= states.FINISHED_STATES
    assert not states.FINISHED_STATES & {"PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING"}


@pytest.mark.parametrize("raw, expected", [
    ("768", (3, None)), ("0", (0, None)), ("15", (None, 15)), (str(9 | 0x80), (None, 9)),  # wait status
    ("3:0", (3, None)), ("0:15", (None, 15)), ("0:0", (0, None)), ("x:0", (None, None)),  # code:signal
])  # fmt: skip
def test_exit_codes(raw: str, expected: tuple[int | None, int | None]) -> None:
    assert states.decode_exit_code(raw) == expected


def test_naming_round_trip() -> None:
    name = naming.job_name("0b5e-uid")
    assert naming.is_job_name(name) and naming.uid_of(name) == "0b5e-uid"
    assert not naming.is_job_name("wrap") and not naming.is_job_name(None)
    assert naming.pod_of(naming.job_comment("ns", "pod")) == ("ns", "pod")
    assert naming.pod_workdir("/jobs/", "ns", "u1") == "/jobs/ns-u1"


def test_errors_share_one_root() -> None:
    rejected = PodRejected("bad", "InvalidFlags")
    assert isinstance(rejected, SlurmlinkError) and isinstance(rejected, ValueError)
    assert (rejected.reason, rejected.message, rejected.transient) == ("InvalidFlags", "bad", False)
    for info in pkgutil.walk_packages(slurmlink.__path__, "slurmlink."):
        if info.name.startswith("slurmlink.devcluster.__main__"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == info.name:
                assert issubclass(value, SlurmlinkError), f"{info.name}.{value.__name__}"


def test_core_imports_nothing_of_slurmlink() -> None:
    for info in pkgutil.iter_modules(importlib.import_module("slurmlink.core").__path__):
        source = importlib.import_module(f"slurmlink.core.{info.name}").__file__
        assert source is not None
        for line in Path(source).read_text().splitlines():
            if line.startswith(("import slurmlink", "from slurmlink")):
                assert line.startswith("from slurmlink.core"), f"{info.name}: {line}"
