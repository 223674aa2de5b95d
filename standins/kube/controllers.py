"""What the stand-in's controllers (garbage collector, EndpointSlices) share: a pass after every change to the
store, and at least every `period` seconds, as kube-controller-manager's informers and resyncs would."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .registry import Registry
from .store import Change

log = logging.getLogger(__name__)


class Controller:
    period = 1.0  # seconds between passes when nothing changes
    name = "controller"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        registry.store.add_listener(self._on_change)

    def _on_change(self, change: Change) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.period)
            self._wake.clear()
            try:
                self.sync()
            except Exception:  # a bug here must not stop the stand-in
                log.exception("%s pass failed", self.name)

    def sync(self) -> None:
        raise NotImplementedError
