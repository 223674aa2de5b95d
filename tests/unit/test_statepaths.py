"""State that must persist: defaults per service (never one file shared by two), made at start, and a warning
when it sits on a filesystem that will not survive (fed mountinfo text, as /proc/self/mountinfo has it)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from slurmlink.api.config import ApiConfig
from slurmlink.config import ConfigError
from slurmlink.proxy.config import ProxyConfig
from slurmlink.statepaths import StatePath, api_state, parse_mountinfo, prepare, proxy_state, vk_state, volatile
from slurmlink.vk.config import VkConfig

# A container: its root is the overlay's writable layer, /var/lib/slurmlink a volume, /run a tmpfs.
CONTAINER = """\
612 540 0:52 / / rw,relatime master:301 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
613 612 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
620 612 259:2 /volumes/state /var/lib/slurmlink rw,relatime - ext4 /dev/nvme0n1p2 rw
621 612 0:60 / /run rw,nosuid,nodev - tmpfs tmpfs rw,size=65536k,mode=755
622 612 259:2 /volumes/with\\040space /srv/with\\040space rw,relatime - xfs /dev/sdb1 rw
623 612 0:61 / /var/lib/slurmlink/scratch rw - tmpfs tmpfs rw
624 623 259:2 / /var/lib/slurmlink/scratch rw - ext4 /dev/sdc1 rw
"""
MOUNTS = parse_mountinfo(CONTAINER)
IDENTITY = {"issuers": [{"preset": "egi-production"}], "policy": {"vos": ["vo.example.org"]},
            "mapping": [{"pool": {}}]}


def test_mountinfo_is_read_with_escapes_and_separator() -> None:
    assert [(m.point, m.fstype) for m in MOUNTS] == [
        ("/", "overlay"), ("/proc", "proc"), ("/var/lib/slurmlink", "ext4"), ("/run", "tmpfs"),
        ("/srv/with space", "xfs"), ("/var/lib/slurmlink/scratch", "tmpfs"), ("/var/lib/slurmlink/scratch", "ext4")]
    assert parse_mountinfo("garbage\n\n1 2 3\n") == []


@pytest.mark.parametrize(("path", "fstype"), [
    ("/var/lib/slurmlink/proxy", None),  # the volume
    ("/var/lib/slurmlinked", "overlay"),  # a sibling of the volume's mount point is not in it
    ("/etc/slurmlink", "overlay"),
    ("/run/slurmlink", "tmpfs"),
    ("/run", "tmpfs"),
    ("/srv/with space/state", None),
    ("/var/lib/slurmlink/scratch/x", None),  # the ext4 mounted over the tmpfs at the same point wins
])
def test_the_filesystem_of_a_path_is_its_longest_mount_point(path: str, fstype: str | None) -> None:
    reason = volatile(path, MOUNTS)
    assert (reason is None) == (fstype is None), reason
    if fstype is not None:
        assert reason is not None and fstype in reason


def test_unknown_mounts_never_warn() -> None:
    assert volatile("/var/lib/slurmlink/api", []) is None


def test_api_and_proxy_keep_their_pools_apart() -> None:
    api = ApiConfig.model_validate({"identity": IDENTITY})
    proxy = ProxyConfig.model_validate({"identity": IDENTITY, "token_file": "t"})
    assert api.identity is not None
    assert api.identity.mapping[0].url == "sqlite:////var/lib/slurmlink/api/pool.sqlite"  # type: ignore[union-attr]
    assert proxy.identity.mapping[0].url == "sqlite:////var/lib/slurmlink/proxy/pool.sqlite"  # type: ignore[union-attr]
    assert api_state(api) == [StatePath("state_dir", "/var/lib/slurmlink/api", "pool database")]
    assert proxy_state(proxy) == [StatePath("state_dir", "/var/lib/slurmlink/proxy", "submission ledger"),
                                  StatePath("state_dir", "/var/lib/slurmlink/proxy", "pool database")]
    assert api_state(ApiConfig()) == []  # no identity: nothing to keep


def test_a_pool_url_that_is_set_is_named_by_its_key() -> None:
    identity: dict[str, Any] = {**IDENTITY, "mapping": [{"service_account": {"default": "x"}},
                                                       {"pool": {"url": "sqlite:////srv/pool/db.sqlite"}},
                                                       {"pool": {"name": "pg", "url": "postgresql://db/pool"}}]}
    config = ApiConfig.model_validate({"identity": identity, "state_dir": "/srv/api"})
    assert api_state(config) == [StatePath("identity.mapping.1.pool.url", "/srv/pool", "pool database")]


def test_the_vk_keeps_its_serving_certificate_in_its_state_dir() -> None:
    config = VkConfig.model_validate({"kubelet": {"tls": "csr"}, "state_dir": "/srv/vk"})
    assert config.kubelet.csr.state_file == "/srv/vk/kubelet-serving.pem"
    assert vk_state(config) == [StatePath("state_dir", "/srv/vk", "kubelet serving certificate")]
    chosen = VkConfig.model_validate({"kubelet": {"tls": "csr", "csr": {"state_file": "/srv/pki/vk.pem"}}})
    assert vk_state(chosen) == [StatePath("kubelet.csr.state_file", "/srv/pki", "kubelet serving certificate")]
    assert vk_state(VkConfig()) == []  # self-signed: nothing to keep
    assert VkConfig().kubelet.csr.state_file == "/var/lib/slurmlink/vk/kubelet-serving.pem"


@pytest.mark.parametrize("model", [ApiConfig, VkConfig])
def test_a_relative_state_dir_is_refused(model: type[Any]) -> None:
    with pytest.raises(ValueError, match=r"state_dir\n  Value error, must be an absolute path"):
        model.model_validate({"state_dir": "state"})


def mountinfo_with(path: Path, fstype: str) -> str:
    return f"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:40 / {path} rw - {fstype} {fstype} rw\n"


def test_prepare_makes_the_directory_private_and_warns_once_on_tmpfs(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "mnt" / "proxy"
    paths = [StatePath("state_dir", str(state), "submission ledger"),
             StatePath("state_dir", str(state), "pool database")]
    with caplog.at_level(logging.WARNING, logger="slurmlink.statepaths"):
        prepare(paths, mountinfo=mountinfo_with(tmp_path / "mnt", "tmpfs"))
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    [record] = caplog.records
    assert record.getMessage() == (f"state_dir: {state} (submission ledger, pool database) is on a tmpfs (memory): "
                                   "it is gone at the next reboot")
    assert (record.key, record.path) == ("state_dir", str(state))  # type: ignore[attr-defined]


def test_prepare_is_quiet_on_a_lasting_filesystem(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "kept"
    state.mkdir(mode=0o750)
    with caplog.at_level(logging.WARNING):
        prepare([StatePath("state_dir", str(state), "pool database")], mountinfo=mountinfo_with(tmp_path, "xfs"))
    assert caplog.records == []
    assert stat.S_IMODE(state.stat().st_mode) == 0o750  # an existing directory is left as the admin made it


def test_prepare_names_the_key_when_the_directory_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=rf"^kubelet\.csr\.state_file: cannot make the directory {blocker}/pki "
                                          r"\(kubelet serving certificate\): Not a directory"):
        prepare([StatePath("kubelet.csr.state_file", str(blocker / "pki"), "kubelet serving certificate")],
                mountinfo="")
