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

from slurmlink.devcluster.cluster import DevCluster, DevClusterError

app = typer.Typer(help="A real single-node SLURM on this machine, for trials and tests.")
console = Console()
err_console = Console(stderr=True)

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where config, keys, logs and pid files live.")]
Cpus = Annotated[int, typer.Option("--cpus", help="CPUs the node advertises (more than the machine has).")]
RestPort = Annotated[int, typer.Option("--rest-port", help="slurmrestd port on 127.0.0.1.")]
CtldPort = Annotated[int, typer.Option("--ctld-port", help="slurmctld port on 127.0.0.1.")]
SlurmdPort = Annotated[int, typer.Option("--slurmd-port", help="slurmd port on 127.0.0.1.")]
DEFAULT_STATE_DIR = Path("/var/lib/slurmlink/dev-cluster")


@app.command()
def up(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    cpus: Cpus = 16,
    rest_port: RestPort = 6820,
    ctld_port: CtldPort = 6817,
    slurmd_port: SlurmdPort = 6818,
) -> None:
    """Start the cluster (keeps daemons that already run) and wait until it takes jobs."""
    cluster = DevCluster(
        state_dir, cpus=cpus, rest_port=rest_port, ctld_port=ctld_port, slurmd_port=slurmd_port
    )
    started = time.monotonic()
    with _failures_shown():
        cluster.up()
    console.print(f"[green]SLURM is up[/green] in {time.monotonic() - started:.1f}s")
    _print_status(cluster)
    console.print(f"\nUse it:  [bold]export SLURM_CONF={cluster.conf_path}[/bold]")
    console.print(f"REST:    {cluster.rest_url}/slurm/v0.0.38/  (JWT key {cluster.jwt_key_path})")
    console.print(f"Jobs:    {cluster.job_root}   test users: {', '.join(cluster.users)}")


@app.command()
def down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Cancel active jobs and stop the daemons."""
    cluster = DevCluster(state_dir)
    started = time.monotonic()
    with _failures_shown():
        cluster.down()
    console.print(f"[green]SLURM is down[/green] ({time.monotonic() - started:.1f}s)")


@app.command()
def status(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Show which daemons run; exit 1 unless all of them do."""
    cluster = DevCluster(state_dir)
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
