"""`slurmlink dev-cluster up|down|status`: a real single-node SLURM on this machine."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from slurmlink.devcluster.cluster import (
    HOST_RELEASE,
    REST_VERSIONS_OF,
    DevCluster,
    DevClusterError,
    default_ports,
    default_state_dir,
)

app = typer.Typer(help="A real single-node SLURM on this machine, for trials and tests.")
console = Console()
err_console = Console(stderr=True)

UpStateDir = Annotated[Path | None, typer.Option(
    "--state-dir", help="Where config, keys, logs and pid files live (default /var/lib/slurmlink/dev-cluster, "
    "or dev-cluster-RELEASE for another release than 22.05)")]
Cpus = Annotated[int, typer.Option("--cpus", help="CPUs the node advertises (more than the machine has).")]
RestPort = Annotated[int | None, typer.Option(
    "--rest-port", help="slurmrestd port on 127.0.0.1 (default 6820; 6830 for 24.11)")]
CtldPort = Annotated[int | None, typer.Option(
    "--ctld-port", help="slurmctld port on 127.0.0.1 (default 6817; 6827 for 24.11)")]
SlurmdPort = Annotated[int | None, typer.Option(
    "--slurmd-port", help="slurmd port on 127.0.0.1 (default 6818; 6828 for 24.11)")]
Accounting = Annotated[bool, typer.Option(
    "--accounting", help="Also run slurmdbd with a MariaDB of its own (sacct and /slurmdb/ then know old jobs; "
    "needs `SLURMLINK_SLURM_ACCOUNTING=1 bash scripts/install.sh`).")]
DbdPort = Annotated[int | None, typer.Option(
    "--dbd-port", help="slurmdbd port on 127.0.0.1, with --accounting (default 6819; 6829 for 24.11)")]
DbPort = Annotated[int | None, typer.Option(
    "--db-port", help="MariaDB port on 127.0.0.1, with --accounting (default 6816; 6826 for 24.11)")]
Release = Annotated[str, typer.Option(
    "--slurm", help=f"SLURM release: {HOST_RELEASE} (the machine's own) or 24.11 (from a Debian 13 root that "
    "scripts/build-slurm-root.sh builds once)")]


@app.command()
def up(
    state_dir: UpStateDir = None,
    cpus: Cpus = 16,
    rest_port: RestPort = None,
    ctld_port: CtldPort = None,
    slurmd_port: SlurmdPort = None,
    slurm: Release = HOST_RELEASE,
    accounting: Accounting = False,
    dbd_port: DbdPort = None,
    db_port: DbPort = None,
) -> None:
    """Start the cluster (keeps daemons that already run) and wait until it takes jobs."""
    if slurm not in REST_VERSIONS_OF:
        err_console.print(f"[red]error:[/red] --slurm {slurm}: the dev cluster runs {', '.join(REST_VERSIONS_OF)}")
        raise typer.Exit(2)
    ports = default_ports(slurm)
    with _failures_shown():
        cluster = DevCluster(state_dir or default_state_dir(slurm), cpus=cpus,
                             rest_port=rest_port or ports["rest_port"], ctld_port=ctld_port or ports["ctld_port"],
                             slurmd_port=slurmd_port or ports["slurmd_port"], slurm=slurm,
                             accounting=accounting, dbd_port=dbd_port or ports["dbd_port"],
                             db_port=db_port or ports["db_port"])
        started = time.monotonic()
        cluster.up()
    console.print(f"[green]SLURM {slurm} is up[/green] in {time.monotonic() - started:.1f}s")
    _print_status(cluster)
    console.print(f"\nUse it:  [bold]export SLURM_CONF={cluster.conf_path}[/bold]")
    if cluster.bin_dir is not None:
        console.print(f"         [bold]export PATH={cluster.bin_dir}:$PATH[/bold]  (its client commands; "
                      f"`cli.bin_dir: {cluster.bin_dir}` for slurmlink api)")
    console.print(f"REST:    {cluster.rest_url}/slurm/{cluster.rest_versions[0]}/  (JWT key {cluster.jwt_key_path})")
    console.print(f"Jobs:    {cluster.job_root}   test users: {', '.join(cluster.users)}")
    if cluster.accounting:
        console.print(f"Accounting: slurmdbd on 127.0.0.1:{cluster.dbd_port}, MariaDB on 127.0.0.1:{cluster.db_port} "
                      f"(sacct; {cluster.rest_url}/slurmdb/{cluster.rest_versions[0]}/)")


@app.command()
def down(state_dir: UpStateDir = None, slurm: Release = HOST_RELEASE) -> None:
    """Cancel active jobs and stop the daemons."""
    started = time.monotonic()
    with _failures_shown():
        DevCluster(state_dir or default_state_dir(slurm)).down()
    console.print(f"[green]SLURM is down[/green] ({time.monotonic() - started:.1f}s)")


@app.command()
def status(state_dir: UpStateDir = None, slurm: Release = HOST_RELEASE) -> None:
    """Show which daemons run; exit 1 unless all of them do."""
    with _failures_shown():
        cluster = DevCluster(state_dir or default_state_dir(slurm))
    pids = _print_status(cluster)
    if not all(pids.values()):
        raise typer.Exit(1)


def _print_status(cluster: DevCluster) -> dict[str, int | None]:
    pids = cluster.status()
    table = Table("daemon", "pid", "log", title=f"dev cluster at {cluster.state_dir}")
    for name, pid in pids.items():
        table.add_row(name, str(pid) if pid else "[red]not running[/red]", str(cluster.log_path(name)))
    console.print(table)
    return pids


@contextlib.contextmanager
def _failures_shown() -> Iterator[None]:
    """Turn a DevClusterError into a readable message, the daemons' log tails, and exit code 1."""
    try:
        yield
    except DevClusterError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        for name, tail in exc.logs.items():
            err_console.print(Panel(tail or "(empty)", title=f"{name} log (last lines)", expand=False))
        err_console.print("Daemons that did start keep running; `down` stops them.")
        raise typer.Exit(1) from None
