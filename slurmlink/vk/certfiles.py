"""`kubelet.tls: files`: the files are watched, and a rotated pair (from cert-manager, a Secret volume, a renewal
script) is served to new connections without a restart, as the kubelet does with its own certificate files."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl

from slurmlink.vk.tls import ServingContext

log = logging.getLogger(__name__)
Signature = tuple[tuple[int, int, int], ...]


class CertificateFiles:
    def __init__(self, cert_file: str, key_file: str, serving: ServingContext, interval: float) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.serving = serving
        self.interval = interval
        self._served = self._signature()  # what the server started with
        self._refused: Signature | None = None

    def _signature(self) -> Signature | None:
        """Inode, mtime and size of both files (through symlinks, as a Secret volume swaps them)."""
        try:
            stats = [os.stat(path) for path in (self.cert_file, self.key_file)]
        except OSError:
            return None  # in the middle of a replacement: looked at again next time
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def check(self) -> bool:
        """Serve the files' pair if it changed and fits together; True if a new pair is now served."""
        signature = self._signature()
        if signature is None or signature in (self._served, self._refused):
            return False
        try:
            with open(self.cert_file, "rb") as cert, open(self.key_file, "rb") as key:
                self.serving.install(cert.read(), key.read())
        except (OSError, ValueError, ssl.SSLError) as exc:
            # One file replaced before the other: the next look will see the pair; a bad pair is said once.
            log.warning("kubelet endpoint: %s and %s do not make a certificate and its key (%s); still serving "
                        "the previous one", self.cert_file, self.key_file, exc)
            self._refused = signature
            return False
        self._served = signature
        log.info("kubelet endpoint: now serving the rotated certificate of %s", self.cert_file)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
