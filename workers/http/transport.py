"""The pinned transport: every request goes to an address the guard has just approved.

The request's URL host is replaced by the checked IP before httpcore sees it, so DNS is not
consulted again between the check and the connection (no rebinding window). The ``Host``
header keeps the original name (httpx set it when the request was built), and for https the
``sni_hostname`` request extension makes httpcore send the name in TLS SNI and verify the
certificate against it.

httpcore pools connections by (scheme, host, port). Once the host is an IP, two https names
on one address would share a TLS connection that was verified for the first name only; so
https gets one pool per name (a bounded LRU), plain http one pool for all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import httpx

from workers.http.guard import Guard
from workers.http.targets import target_of

TransportFactory = Callable[[], httpx.AsyncBaseTransport]
MAX_TLS_POOLS = 64


class PinnedTransport(httpx.AsyncBaseTransport):
    def __init__(self, guard: Guard, factory: TransportFactory | None = None) -> None:
        self._guard = guard
        self._factory = factory or httpx.AsyncHTTPTransport
        self._plain = self._factory()
        self._tls: OrderedDict[str, httpx.AsyncBaseTransport] = OrderedDict()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = target_of(request.url)  # scheme and credentials, again: defence in depth
        addresses = await self._guard.addresses(target)
        extensions = dict(request.extensions)
        if target.scheme == "https":
            extensions["sni_hostname"] = target.host
            inner = self._tls_pool(target.host)
        else:
            inner = self._plain
        # Every checked address in DNS order until one connects (an IPv6 answer on a host
        # without IPv6 routes must not fail a name that also has IPv4). A connect error
        # happens before the body is sent, so the request can be tried again as it is.
        for n, address in enumerate(addresses, start=1):
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=str(address)),
                headers=request.headers,  # Host: the original name
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await inner.handle_async_request(pinned)
            except httpx.ConnectError:
                if n == len(addresses):
                    raise
        raise AssertionError("unreachable: the guard returns at least one address")

    def _tls_pool(self, host: str) -> httpx.AsyncBaseTransport:
        pool = self._tls.get(host)
        if pool is None:
            pool = self._tls[host] = self._factory()
            if len(self._tls) > MAX_TLS_POOLS:
                # Dropped without closing: requests in flight on it finish; its idle
                # connections are closed when the pool is collected.
                self._tls.popitem(last=False)
        else:
            self._tls.move_to_end(host)
        return pool

    async def aclose(self) -> None:
        await self._plain.aclose()
        for pool in self._tls.values():
            await pool.aclose()
        self._tls.clear()
