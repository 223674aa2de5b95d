"""`slurmlink proxy`: the Check-in-enabled SLURM REST API (mode 1), a reverse proxy in front of slurmrestd."""

from slurmlink.proxy.app import create_app
from slurmlink.proxy.config import ProxyConfig

__all__ = ["ProxyConfig", "create_app"]
