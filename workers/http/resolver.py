"""Turning a host name into addresses: the port the guard depends on, and the system's.

Tests inject a ``Resolver`` of their own (an in-memory map), so that no test ever asks real
DNS about a hostile name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Protocol

from workers.http.addresses import IPAddress


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` has; OSError (e.g. ``socket.gaierror``) when none."""
        ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``), off the event loop's thread."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        found: list[IPAddress] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]))
            if address not in found:
                found.append(address)
        return found
