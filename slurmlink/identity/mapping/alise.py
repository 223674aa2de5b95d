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
    """The account a user linked to their Check-in identity in ALISE (account linking)."""

    kind: Literal["alise"] = "alise"
    name: str = Field(default="alise", description=(
        "the step's name, which a VO's `settings.strategies: [...]` refers to; names must be distinct"))
    url: str = Field(description="ALISE's base URL")
    site: str = Field(min_length=1, description="this site's name in ALISE")
    apikey_file: str = Field(description="the file holding ALISE's API key")
    timeout: float = Field(default=5.0, gt=0, description="seconds per request")
    retries: int = Field(default=1, ge=0, description="retries of a failed request")
    cache_ttl: float = Field(default=300.0, description="seconds an answer is remembered")
    miss_ttl: float = Field(default=30.0, description="seconds a \"no account\" answer is remembered")
    cache_size: int = Field(default=10_000, ge=0, description="answers remembered at most")

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
