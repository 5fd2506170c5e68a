"""The revocation listener on a fake connection: a notification evicts the key at once, a
heartbeat vouches for the cache, and a lost or silent connection makes the cache deaf (it
forgets everything and trusts answers for a second only) until the listener is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from auth import Principal, RevocationListener
from auth.api_keys import REVOCATION_CHANNEL
from auth.key_cache import DEAF_TTL_S, LISTENING_TTL_S, KeyCache

WAIT_S = 10.0  # a safety net for a broken test, never what a test measures


class FakeConnection:
    """A LISTEN connection whose heartbeats answer until ``fail`` is set."""

    def __init__(self) -> None:
        self.listeners: dict[str, Callable[..., None]] = {}
        self.on_terminate: list[Callable[..., None]] = []
        self.heartbeats = 0
        self.beat = asyncio.Event()
        self.fail: Exception | None = None
        self.closed = False

    async def add_listener(self, channel: str, callback: Callable[..., None]) -> None:
        self.listeners[channel] = callback

    def add_termination_listener(self, callback: Callable[..., None]) -> None:
        self.on_terminate.append(callback)

    async def fetchval(self, query: str, *args: object, timeout: float | None = None) -> Any:
        assert query == "SELECT 1" and timeout is not None and timeout <= 1.0
        if self.fail is not None:
            raise self.fail
        self.heartbeats += 1
        self.beat.set()
        return 1

    def is_closed(self) -> bool:
        return self.closed

    def terminate(self) -> None:
        self.closed = True

    async def close(self, *, timeout: float | None = None) -> None:
        self.closed = True

    def notify(self, payload: str) -> None:
        self.listeners[REVOCATION_CHANNEL](self, 4242, REVOCATION_CHANNEL, payload)

    def lose(self) -> None:
        self.closed = True
        for callback in self.on_terminate:
            callback(self)


class Connections:
    """Hands out a new FakeConnection per connect, or refuses while ``down``."""

    def __init__(self) -> None:
        self.made: list[FakeConnection] = []
        self.connected = asyncio.Event()
        self.down = False

    async def __call__(self) -> FakeConnection:
        if self.down:
            raise OSError("connection refused")
        conn = FakeConnection()
        self.made.append(conn)
        self.connected.set()
        return conn


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():  # noqa: ASYNC110 - the fakes set no event for every state asked
            await asyncio.sleep(0.01)


@pytest.fixture
def cache() -> KeyCache[Principal]:
    return KeyCache()


@pytest.fixture
async def listening(
    cache: KeyCache[Principal],
) -> AsyncIterator[tuple[RevocationListener, Connections]]:
    connections = Connections()
    listener = RevocationListener(connections, cache)
    await listener.start()
    await _until(lambda: bool(connections.made) and connections.made[0].heartbeats > 0)
    yield listener, connections
    await listener.stop()


def _remember(cache: KeyCache[Principal], key_id: str) -> None:
    cache.put(f"digest-{key_id}", key_id, Principal("acme", key_id))


async def test_the_listener_listens_on_the_revocation_channel_and_vouches_for_the_cache(
    listening: tuple[RevocationListener, Connections], cache: KeyCache[Principal]
) -> None:
    _, connections = listening
    assert set(connections.made[0].listeners) == {REVOCATION_CHANNEL}
    assert cache.listening and cache.ttl_s == LISTENING_TTL_S


async def test_a_notification_evicts_its_key_at_once_and_wakes_whoever_asked(
    listening: tuple[RevocationListener, Connections], cache: KeyCache[Principal]
) -> None:
    listener, connections = listening
    woken: list[str] = []
    listener.on_revoked(woken.append)
    _remember(cache, "aaaaaaaaaaaa")
    _remember(cache, "bbbbbbbbbbbb")
    connections.made[0].notify("aaaaaaaaaaaa")
    assert cache.get("digest-aaaaaaaaaaaa") == (False, None)  # no await: at once
    assert cache.get("digest-bbbbbbbbbbbb")[0]
    assert woken == ["aaaaaaaaaaaa"]


async def test_a_lost_connection_makes_the_cache_deaf_then_it_listens_again(
    listening: tuple[RevocationListener, Connections], cache: KeyCache[Principal]
) -> None:
    _, connections = listening
    first = connections.made[0]
    connections.down = True
    _remember(cache, "aaaaaaaaaaaa")
    first.lose()
    await _until(lambda: not cache.listening)
    # What was remembered may have been revoked unheard: forgotten, and new answers are
    # trusted for a second only while no listener vouches.
    assert len(cache) == 0 and cache.ttl_s == DEAF_TTL_S
    connections.down = False
    await _until(lambda: len(connections.made) == 2 and connections.made[1].heartbeats > 0)
    assert cache.listening and first.closed


async def test_a_heartbeat_that_fails_makes_the_cache_deaf(
    listening: tuple[RevocationListener, Connections], cache: KeyCache[Principal]
) -> None:
    # A silent network: the connection looks open, but the heartbeat times out.
    _, connections = listening
    connections.down = True
    _remember(cache, "aaaaaaaaaaaa")
    connections.made[0].fail = TimeoutError()
    await _until(lambda: not cache.listening and len(cache) == 0)
    assert connections.made[0].closed  # dropped, to be replaced


async def test_a_listener_that_cannot_connect_leaves_the_cache_deaf_and_keeps_trying(
    cache: KeyCache[Principal],
) -> None:
    connections = Connections()
    connections.down = True
    listener = RevocationListener(connections, cache)
    await listener.start()
    try:
        await asyncio.sleep(0.05)
        assert not cache.listening
        connections.down = False
        await _until(lambda: cache.listening)
    finally:
        await listener.stop()
    assert not cache.listening  # stopped: nobody vouches any more
