"""Version negotiation: the proxy and the REST backend read slurmrestd's OpenAPI document, use the newest
version both speak, refuse clearly without one, and read it again after slurmrestd went away or stopped
serving the version (a SLURM upgrade under a running service). The live restart test is in tests/integration."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from slurmlink.proxy.apiversion import ApiVersion
from slurmlink.proxy.errors import Refusal
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.rest import RestBackend, RestConfig


def spec(*numbers: int) -> dict[str, Any]:
    return {"paths": {f"/slurm/v0.0.{n}/job/submit": {} for n in numbers}}


class Site:
    """What slurmrestd would answer: its OpenAPI document and a ping, for the versions it now serves."""

    def __init__(self, *numbers: int) -> None:
        self.numbers = numbers
        self.down = False
        self.spec_reads = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("refused")
        if request.url.path == "/openapi/v3":
            self.spec_reads += 1
            return httpx.Response(200, json=spec(*self.numbers))
        version = request.url.path.split("/")[2]
        if int(version.rsplit(".", 1)[1]) not in self.numbers:
            return httpx.Response(404, text="Unable find requested URL. Please view /openapi/v3 for API reference.")
        return httpx.Response(200, json={"jobs": [], "errors": [], "warnings": []})


def proxy_versions(site: Site, configured: str = "auto") -> ApiVersion:
    http = httpx.AsyncClient(transport=httpx.MockTransport(site.handler))
    return ApiVersion(configured, http, "http://site", lambda: {"X-SLURM-USER-NAME": "slurm"})


def test_proxy_picks_the_newest_common_version_and_follows_an_upgrade() -> None:
    site = Site(38, 40, 41, 42, 99)
    versions = proxy_versions(site)

    async def go() -> list[str]:
        seen = [await versions.get(), await versions.get()]
        site.numbers = (40,)
        versions.forget()
        seen.append(await versions.get())
        return seen

    assert asyncio.run(go()) == ["v0.0.42", "v0.0.42", "v0.0.40"]
    assert site.spec_reads == 2 and versions.offered == ["v0.0.40"]


def test_proxy_refuses_clearly_without_a_common_version() -> None:
    versions = proxy_versions(Site(35, 99))
    with pytest.raises(Refusal, match=r"offers no API version slurmlink supports.*v0\.0\.35.*slurmlink speaks"):
        asyncio.run(versions.get())


def test_a_configured_version_is_never_read_nor_forgotten() -> None:
    site = Site(40)
    versions = proxy_versions(site, "v0.0.41")
    versions.forget()
    assert asyncio.run(versions.get()) == "v0.0.41" and site.spec_reads == 0


def test_rest_backend_reads_the_versions_again_after_the_site_changed() -> None:
    site = Site(40, 41, 42)
    http = httpx.AsyncClient(base_url="http://site", transport=httpx.MockTransport(site.handler))
    backend = RestBackend(RestConfig(url="http://site"), http=http)

    async def go() -> list[str]:
        await backend._listing("service", "token")
        seen = [backend.version]
        site.numbers = (40,)  # restarted with fewer versions: v0.0.42 is now an unknown URL
        with pytest.raises(SlurmError, match="no longer serves") as err:
            await backend._listing("service", "token")
        assert err.value.transient
        await backend._listing("service", "token")
        seen.append(backend.version)
        site.down = True
        with pytest.raises(SlurmError):
            await backend._listing("service", "token")
        site.down, site.numbers = False, (40, 41, 42)
        await backend._listing("service", "token")
        seen.append(backend.version)
        return seen

    assert asyncio.run(go()) == ["v0.0.42", "v0.0.40", "v0.0.42"]


def test_proxy_sees_added_versions_at_the_next_recheck() -> None:
    site = Site(40)
    http = httpx.AsyncClient(transport=httpx.MockTransport(site.handler))
    versions = ApiVersion("auto", http, "http://site", dict, recheck_seconds=0.05)

    async def go() -> list[str]:
        seen = [await versions.get()]
        site.numbers = (40, 41, 42)
        seen.append(await versions.get())  # within the recheck interval: unchanged
        await asyncio.sleep(0.06)
        site.down = True  # a recheck that fails keeps what worked
        seen.append(await versions.get())
        site.down = False
        await asyncio.sleep(0.06)
        seen.append(await versions.get())
        return seen

    assert asyncio.run(go()) == ["v0.0.40", "v0.0.40", "v0.0.40", "v0.0.42"]
