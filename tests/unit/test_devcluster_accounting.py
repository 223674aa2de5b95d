"""The dev cluster's accounting files and commands, rendered (nothing is started here; test_accounting.py
starts them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.devcluster import accounting as acct
from slurmlink.devcluster.rootfs import RootMissing, find_root


def test_slurmdbd_conf_listens_on_loopback_and_accepts_jwt() -> None:
    secret = "ab12"  # noqa: S105 - a made-up one
    text = acct.render_slurmdbd_conf(host="h", dbd_port=7, db_port=8, password=secret, munge_socket=Path("/m.s"),
                                     jwt_key=Path("/k"), pid_file=Path("/p"), plugin_dir=None)
    lines = set(text.splitlines())
    assert {"DbdAddr=127.0.0.1", "DbdPort=7", "CommunicationParameters=NoInAddrAny", "StorageHost=127.0.0.1",
            "StoragePort=8", "StoragePass=ab12", "AuthInfo=socket=/m.s", "AuthAltTypes=auth/jwt"} <= lines
    assert not any(line.startswith("PluginDir=") for line in lines)


def test_mariadbd_binds_loopback_without_the_machines_defaults() -> None:
    argv = acct.mariadbd_argv(Path("/d"), Path("/s"), 9, Path("/p"))
    assert argv[:2] == ["mariadbd", "--no-defaults"]
    assert {"--bind-address=127.0.0.1", "--port=9", "--datadir=/d", "--socket=/s"} <= set(argv)


def test_association_commands_register_cluster_account_and_users() -> None:
    commands = acct.association_commands("c", {"a": ("u1", "u2"), "b": ()})
    assert commands[0] == ["-i", "add", "cluster", "c"]
    assert ["-i", "add", "user", "u1,u2", "Account=a", "Cluster=c", "DefaultAccount=a"] in commands
    assert [c[2] for c in commands] == ["cluster", "account", "user", "account"]


def test_a_users_default_account_is_the_first_that_lists_them() -> None:
    commands = acct.association_commands("c", acct.default_accounts(("u1", "u2", "u3")))
    users = [c for c in commands if c[2] == "user"]
    assert users == [["-i", "add", "user", "u1,u2,u3", "Account=slurmlink", "Cluster=c", "DefaultAccount=slurmlink"],
                     ["-i", "add", "user", "u1,u2", "Account=alpha", "Cluster=c"],
                     ["-i", "add", "user", "u1", "Account=beta", "Cluster=c"]]


@pytest.mark.parametrize("release", ["22.05", "24.11"])
def test_slurm_conf_with_and_without_accounting(release: str, tmp_path: Path) -> None:
    if release != "22.05":
        try:
            find_root(release)
        except RootMissing as exc:
            pytest.skip(str(exc))
    with_acct = DevCluster(tmp_path, slurm=release, accounting=True, dbd_port=7, min_job_age=2)._render_conf()
    lines = set(with_acct.splitlines())
    assert {"AccountingStorageType=accounting_storage/slurmdbd", "AccountingStoragePort=7",
            "AccountingStoreFlags=job_comment", "MinJobAge=2"} <= lines
    without = set(DevCluster(tmp_path, slurm=release, accounting=False)._render_conf().splitlines())
    assert not any(line.startswith(("AccountingStoragePort", "AccountingStoreFlags")) for line in without)
    assert ("AccountingStorageType=accounting_storage/none" in without) == (release == "22.05")
