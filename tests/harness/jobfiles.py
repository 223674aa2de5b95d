"""Writing a pod's status records the way the job script does (prelude.sh's `sl_put`), for tests of the watches."""

from __future__ import annotations

import os
from pathlib import Path


def put(status: Path, name: str, value: str) -> None:
    """A hidden temporary file renamed into place."""
    temporary = status / f".{name}.{os.getpid()}"
    temporary.write_text(value + "\n")
    os.replace(temporary, status / name)
