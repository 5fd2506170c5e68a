"""The tenant limits table (``limits.store``) and the listener that hears it change
(``limits.changes``), on fakes: what is remembered and for how long, that a write and its
notification are one statement, that a document that no longer validates falls back to the
defaults, and that a notification makes every listening process forget at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pglast
import pytest
from pglast import ast

from limits.changes import LimitsListener
from limits.store import CHANGES_CHANNEL, DDL, PUT, REMEMBER_S, LimitsStore
from limits.tenant_limits import DEFAULT_LIMITS, TenantLimits

WAIT_S = 10.0  # a safety net for a broken test, never what a test measures
OWN = TenantLimits.model_validate({"admission": {"forks_per_minute": 3}})


class Table:
    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}
        self.reads = 0
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def fetchrow(self, query: str, tenant: str) -> Any:
        self.reads += 1
        return (self.rows[tenant],) if tenant in self.rows else None

    async def execute(self, query: str, *args: Any) -> str:
        self.statements.append((query, args))
        if args:
            self.rows[args[0]] = args[1]
        return "SELECT 1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_tenant_without_a_row_has_the_defaults_remembered_for_a_while() -> None:
    table, clock = Table(), Clock()
    store = LimitsStore(table, clock)
    assert await store.get("acme") is DEFAULT_LIMITS
    table.rows["acme"] = OWN.model_dump_json()
    clock.now += REMEMBER_S / 2
    assert await store.get("acme") is DEFAULT_LIMITS  # remembered
    clock.now += REMEMBER_S
    assert await store.get("acme") == OWN
    assert table.reads == 2


async def test_a_put_is_one_statement_that_notifies_and_the_writer_forgets_at_once() -> None:
    table, clock = Table(), Clock()
    store = LimitsStore(table, clock)
    assert await store.get("acme") is DEFAULT_LIMITS
    await store.put("acme", OWN)
    ((statement_text, (tenant, document)),) = table.statements
    assert (statement_text, tenant, TenantLimits.model_validate_json(document)) == (
        PUT,
        "acme",
        OWN,
    )
    assert await store.get("acme") == OWN  # no wait for REMEMBER_S
    (parsed,) = [raw.stmt for raw in pglast.parse_sql(PUT)]
    assert isinstance(parsed.withClause.ctes[0].ctequery, ast.InsertStmt)
    assert f"pg_notify('{CHANGES_CHANNEL}', tenant)" in PUT


def test_the_ddl_parses() -> None:
    kinds = [type(raw.stmt).__name__ for raw in pglast.parse_sql(DDL)]
    assert kinds == ["SelectStmt", "CreateStmt"]


async def test_a_stored_document_that_no_longer_validates_gives_the_defaults_and_a_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = Table()
    table.rows["acme"] = '{"admission": {"tiers_v0": []}}'
    with caplog.at_level(logging.ERROR, "aob.limits"):
        assert await LimitsStore(table).get("acme") is DEFAULT_LIMITS
    assert "tenant acme: its stored limits are not valid" in caplog.text


async def test_a_pool_that_decodes_jsonb_gives_the_same_document() -> None:
    table = Table()
    table.rows["acme"] = OWN.model_dump(mode="json")
    assert await LimitsStore(table).get("acme") == OWN


# --- the listener ---------------------------------------------------------------------------------


class FakeConnection:
    def __init__(self) -> None:
        self.listeners: dict[str, Callable[..., None]] = {}
        self.on_terminate: list[Callable[..., None]] = []
        self.closed = False

    async def add_listener(self, channel: str, callback: Callable[..., None]) -> None:
        self.listeners[channel] = callback

    def add_termination_listener(self, callback: Callable[..., None]) -> None:
        self.on_terminate.append(callback)

    def is_closed(self) -> bool:
        return self.closed

    def terminate(self) -> None:
        self.closed = True

    def notify(self, tenant: str) -> None:
        self.listeners[CHANGES_CHANNEL](self, 4242, CHANGES_CHANNEL, tenant)

    def lose(self) -> None:
        self.closed = True
        for callback in self.on_terminate:
            callback(self)


class Connections:
    def __init__(self) -> None:
        self.made: list[FakeConnection] = []

    async def __call__(self) -> FakeConnection:
        conn = FakeConnection()
        self.made.append(conn)
        return conn


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():  # noqa: ASYNC110 - the fakes set no event for every state asked
            await asyncio.sleep(0.01)


async def test_a_notification_makes_the_store_forget_that_tenant_at_once() -> None:
    table, clock, connections = Table(), Clock(), Connections()
    store = LimitsStore(table, clock)
    listener = LimitsListener(connections, store)
    await listener.start()
    try:
        await _until(lambda: bool(connections.made and connections.made[0].listeners))
        assert await store.get("acme") is DEFAULT_LIMITS
        assert await store.get("umbrella") is DEFAULT_LIMITS
        table.rows["acme"] = OWN.model_dump_json()  # written by another process
        connections.made[0].notify("acme")
        assert await store.get("acme") == OWN  # within REMEMBER_S: heard, not timed out
        assert table.reads == 3  # umbrella is still remembered
        await store.get("umbrella")
        assert table.reads == 3
    finally:
        await listener.stop()


async def test_a_lost_connection_is_replaced_and_what_was_missed_is_forgotten() -> None:
    table, clock, connections = Table(), Clock(), Connections()
    store = LimitsStore(table, clock)
    listener = LimitsListener(connections, store)
    await listener.start()
    try:
        await _until(lambda: bool(connections.made and connections.made[0].listeners))
        await store.get("acme")
        connections.made[0].lose()
        table.rows["acme"] = OWN.model_dump_json()  # changed while nobody listened
        await _until(lambda: len(connections.made) == 2 and bool(connections.made[1].listeners))
        assert await store.get("acme") == OWN
    finally:
        await listener.stop()
    assert connections.made[1].closed
