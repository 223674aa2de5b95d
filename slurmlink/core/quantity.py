"""Kubernetes resource quantities ("500m", "2Gi", "1e3") as numbers."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from slurmlink.core.errors import PodRejected

_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
    "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"\A([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?\Z")


def parse_quantity(value: object, what: str) -> Decimal:
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise PodRejected(f"{what}: {text!r} is not a Kubernetes quantity", "InvalidResource")
    try:
        number = Decimal(match.group(1)) * _SUFFIXES[match.group(2) or ""]
    except InvalidOperation as exc:
        raise PodRejected(f"{what}: {text!r} is not a Kubernetes quantity", "InvalidResource") from exc
    if number < 0:
        raise PodRejected(f"{what}: {text!r} is negative", "InvalidResource")
    return number


def cpus(value: object, what: str) -> int:
    """Whole CPUs, rounded up: SLURM allocates CPUs, not millicores."""
    return max(1, math.ceil(parse_quantity(value, what)))


def mebibytes(value: object, what: str) -> int:
    return max(1, math.ceil(parse_quantity(value, what) / Decimal(2**20)))


def count(value: object, what: str) -> int:
    return math.ceil(parse_quantity(value, what))
