"""Pod addresses (vk `services`): one address of the configured range per pod that serves ports, held while
the pod runs, never given to two pods at once.

Stable across a vk restart, so that a Service's endpoints do not flap: the address a running pod already
shows (status.podIP) is kept for it (`keep`, fed by the watch before any address is handed out), and a pod
without one gets the first free address from a place that its uid alone decides (`assign`), the same place
after every restart. Addresses of the vk's own host (`excluded`: loopback's 127.0.0.1, the node's address, its
listeners') are never handed out, even when the range holds them. No I/O: the caller reports the address and
serves on it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class PodAddresses:
    def __init__(self, network: str, excluded: Iterable[str] = ()) -> None:
        self.network = ipaddress.ip_network(network)
        first, size = int(self.network.network_address), self.network.num_addresses
        if self.network.version == 4 and self.network.prefixlen < 31:
            first, size = first + 1, size - 2  # not the network's own address, nor its broadcast
        self._first, self.size = first, size
        self._of_pod: dict[str, Address] = {}
        self._pod_at: dict[Address, str] = {}
        self._excluded = {ipaddress.ip_address(a) for a in excluded}
        self._excluded = {a for a in self._excluded if self._in_range(a)}

    def _in_range(self, address: Address) -> bool:
        return address.version == self.network.version and 0 <= int(address) - self._first < self.size

    def _usable(self, address: Address) -> bool:
        return self._in_range(address) and address not in self._excluded

    def keep(self, uid: str, shown: str) -> bool:
        """Hold `shown` (the address the pod shows) for the pod, if it is in the range and no other pod's."""
        try:
            address = ipaddress.ip_address(shown)
        except ValueError:
            return False
        holder = self._pod_at.get(address)
        if holder == uid:
            return True
        if holder is not None or uid in self._of_pod or not self._usable(address):
            return False
        self._of_pod[uid], self._pod_at[address] = address, uid
        return True

    def assign(self, uid: str) -> str | None:
        """The pod's address: the one it holds, else a free one (None when the range is used up)."""
        if uid in self._of_pod:
            return str(self._of_pod[uid])
        start = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") % self.size
        # Among as many consecutive places as addresses held or excluded, plus one, one is free, if any is.
        for step in range(min(self.size, len(self._pod_at) + len(self._excluded) + 1)):
            address = ipaddress.ip_address(self._first + (start + step) % self.size)
            if address not in self._pod_at and address not in self._excluded:
                self._of_pod[uid], self._pod_at[address] = address, uid
                return str(address)
        return None

    def release(self, uid: str) -> None:
        address = self._of_pod.pop(uid, None)
        if address is not None:
            del self._pod_at[address]

    def address_of(self, uid: str) -> str | None:
        address = self._of_pod.get(uid)
        return None if address is None else str(address)

    def __len__(self) -> int:
        return len(self._of_pod)
