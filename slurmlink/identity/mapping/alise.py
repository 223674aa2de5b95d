"""Strategy `alise`: the account the person linked at the site's ALISE."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from .alise_client import AliseClient
from .base import MappingRequest, Strategy, StrategyOptions


class Alise(Strategy):
    def __init__(self, client: AliseClient, *, name: str = "alise") -> None:
        self.name = name
        self.client = client
        self.description = f"ALISE site {client.site}"

    async def resolve(self, request: MappingRequest) -> str | None:
        return await self.client.lookup(request.issuer, request.subject)

    async def aclose(self) -> None:
        await self.client.aclose()


class AliseOptions(StrategyOptions):
    kind: Literal["alise"] = "alise"
    name: str = "alise"
    url: str
    site: str = Field(min_length=1)
    apikey_file: str
    timeout: float = Field(5.0, gt=0)
    retries: int = Field(1, ge=0)
    cache_ttl: float = 300.0
    miss_ttl: float = 30.0
    cache_size: int = Field(10_000, ge=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"ALISE base URL must be http(s): {url!r}")
        return url

    def build(self) -> Alise:
        apikey = Path(self.apikey_file).read_text().strip()
        client = AliseClient(self.url, self.site, apikey, timeout=self.timeout, retries=self.retries,
                             cache_ttl=self.cache_ttl, miss_ttl=self.miss_ttl, cache_size=self.cache_size)
        return Alise(client, name=self.name)
