"""The release package: the sdist holds what a build needs, the wheel built from it installs into a fresh venv
with only the runtime dependencies (no test or dev extras), and the installed `slurmlink` works from there.

The venv is kept under /var/cache/slurmlink, keyed on pyproject.toml and the Python version (the dependencies),
so a re-run only reinstalls the freshly built wheel; a fresh machine builds it once (dependencies from the
package registry or pip's cache). Timings are not checked here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slurmlink import examples
from tests.deploy.check_config import stage_site

pytestmark = pytest.mark.timeout(900)
SOURCE = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SLURMLINK_TEST_CACHE", "/var/cache/slurmlink"))
VERSION = tomllib.loads((SOURCE / "pyproject.toml").read_text())["project"]["version"]

# Each command runs as `slurmlink ARGS` from the venv that has only the wheel, must exit 0, and its stdout must
# pass the check. `{examples}` stands for the installed package's example configurations, `{site}` for a tree
# holding what the vk example names (tests/deploy/check_config.py).
COMMANDS: dict[str, Callable[[str], bool]] = {
    "--version": lambda out: out == f"slurmlink {VERSION}\n",
    "config example vk": lambda out: out == examples.config_path("vk").read_text(),
    "config schema proxy": lambda out: json.loads(out)["title"] == "slurmlink proxy configuration",
    "check-config vk -c {examples}/vk.yaml --root {site}": lambda out: out.startswith("ok "),
}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sdist, and the wheel built from that sdist (as `python -m build` does): a file the sdist lacks fails."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(SOURCE)], capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _wheel(dist: Path) -> Path:
    [wheel] = dist.glob("slurmlink-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv with the wheel and its runtime dependencies only, reused while pyproject.toml is unchanged."""
    key = hashlib.sha256((SOURCE / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()[:16]
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        lock = (CACHE / "wheel-venv.lock").open("w")
    except OSError:  # no cache here: build it afresh
        yield _install(tmp_path_factory.mktemp("venv") / "venv", _wheel(dist), fresh=True)
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be using or building it
        path = CACHE / f"wheel-venv-{key}"
        for stale in CACHE.glob("wheel-venv-*"):
            if stale.is_dir() and stale != path:
                shutil.rmtree(stale, ignore_errors=True)
        complete = path / ".slurmlink-complete"  # absent: never built, or a build was interrupted
        _install(path, _wheel(dist), fresh=not complete.exists())
        complete.touch()
        yield path


def _install(path: Path, wheel: Path, *, fresh: bool) -> Path:
    if fresh:
        _run([sys.executable, "-m", "venv", "--clear", str(path)])
        _run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)])
    else:  # the dependencies are there; the code is today's
        _run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheel)])
    return path


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, env=_clean_env())
    assert result.returncode == 0, f"{shlex.join(argv)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


def _clean_env() -> dict[str, str]:
    """No trace of the development venv: the installed package must stand on its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(SOURCE)))
    return env


def test_sdist_holds_what_a_build_needs(dist: Path) -> None:
    [sdist] = dist.glob("slurmlink-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    shipped = {f"slurmlink/examples/{name}.yaml" for name in examples.config_names()}
    assert {"pyproject.toml", "README.md", "LICENSE", "slurmlink/translate/prelude.sh",
            "slurmlink/examples/pods/hello-pod.yaml", *shipped} <= names


def test_wheel_holds_the_package_data_and_declares_only_runtime_dependencies(dist: Path) -> None:
    with zipfile.ZipFile(_wheel(dist)) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"slurmlink-{VERSION}.dist-info/METADATA").decode()
    assert {"slurmlink/translate/prelude.sh", "slurmlink/examples/vk.yaml", "slurmlink/examples/pods/hello-pod.yaml",
            f"slurmlink-{VERSION}.dist-info/licenses/LICENSE"} <= names
    assert not any(name.startswith(("tests/", "standins/", "bench/", "docs/")) for name in names)
    runtime = {re.match(r"[\w.-]+", line.split(":", 1)[1].strip()).group(0).lower()  # type: ignore[union-attr]
               for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert runtime & {"pytest", "hypothesis", "mypy", "ruff", "jsonschema", "build", "import-linter"} == set()
    assert {"fastapi", "pydantic", "lightkube", "cryptography"} <= runtime


# Run inside the venv: the distributions installed beyond slurmlink's runtime requirements (recursively, with
# extras only where a requirement asks for them), pip, setuptools and wheel.
_EXTRA_DISTRIBUTIONS = """
import json
from importlib.metadata import PackageNotFoundError, distribution, distributions
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name

needed, seen, todo = set(), set(), [("slurmlink", ())]
while todo:
    name, extras = todo.pop()
    needed.add(canonicalize_name(name))
    seen.add((canonicalize_name(name), extras))  # a name asked for again with other extras needs more
    try:
        requires = distribution(name).requires or []
    except PackageNotFoundError:
        continue  # a marker-excluded or optional one
    for line in requires:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
            if (canonicalize_name(req.name), tuple(sorted(req.extras))) not in seen:
                todo.append((req.name, tuple(sorted(req.extras))))
installed = {canonicalize_name(d.metadata["Name"]) for d in distributions()}
print(json.dumps(sorted(installed - needed - {"pip", "setuptools", "wheel"})))
"""


def test_the_venv_holds_only_the_runtime_dependencies(venv: Path) -> None:
    result = subprocess.run([str(venv / "bin" / "python"), "-c", _EXTRA_DISTRIBUTIONS], capture_output=True,
                            text=True, timeout=60, check=True, env=_clean_env())
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_installed_command_works(venv: Path, command: str, tmp_path: Path) -> None:
    package = subprocess.run([str(venv / "bin" / "python"), "-c", "import slurmlink, pathlib; "
                              "print(pathlib.Path(slurmlink.__file__).parent)"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60, check=True, env=_clean_env()).stdout.strip()
    assert Path(package).is_relative_to(venv), package  # the installed copy, not the source tree
    stage_site(tmp_path / "site", "vk", examples.config_path("vk"))
    argv = [str(venv / "bin" / "slurmlink"),
            *shlex.split(command.format(examples=f"{package}/examples", site=tmp_path / "site"))]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
                            env=_clean_env())
    assert result.returncode == 0, result.stderr
    assert COMMANDS[command](result.stdout), result.stdout[:2000]
