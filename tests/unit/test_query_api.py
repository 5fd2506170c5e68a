"""Pure parts of the query API: cursors, position tokens, page bounds, limits, wake-ups."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from query_api.cursors import decode_cursor, encode_cursor
from query_api.errors import BadCursor, BadPosition, QueryApiError
from query_api.limits import MAX_ALIASES
from query_api.pagination import MAX_PAGE
from query_api.progress import ProgressWatcher
from query_api.read_your_writes import parse_position
from query_api.schema import schema
from schemas.position import Position
from schemas.topics import RUN_EVENTS, WORKFLOW_EVENTS

keys = st.lists(
    st.one_of(st.text(max_size=40), st.integers(-(2**62), 2**62)), min_size=1, max_size=3
)


@given(keys)
def test_cursor_round_trip(key: list[object]) -> None:
    cursor = encode_cursor(*key)
    assert cursor.isascii()
    assert decode_cursor(cursor, len(key)) == key


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "%%%",
        base64.urlsafe_b64encode(b"{not json").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),  # not a list
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),  # wrong arity
        base64.urlsafe_b64encode(json.dumps([[1], "x"]).encode()).decode(),  # not scalars
        base64.urlsafe_b64encode(json.dumps([True, "x"]).encode()).decode(),
        "é",
    ],
)
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(BadCursor, match="not one this API issued"):
        decode_cursor(cursor, 2)


def test_errors_share_one_root() -> None:
    assert issubclass(BadCursor, QueryApiError)
    assert issubclass(BadPosition, QueryApiError)


@given(
    st.sampled_from([RUN_EVENTS, WORKFLOW_EVENTS]), st.integers(0, 10_000), st.integers(0, 2**62)
)
def test_position_tokens_round_trip(topic: str, partition: int, offset: int) -> None:
    position = Position(topic, partition, offset)
    assert parse_position(position.token()) == position


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "not <topic>:<partition>:<offset>"),
        ("aob.runs.events", "not <topic>:<partition>:<offset>"),
        ("aob.runs.events:1", "not <topic>:<partition>:<offset>"),
        (":1:2", "not <topic>:<partition>:<offset>"),
        ("aob.runs.events:x:2", "non-numeric"),
        ("aob.runs.events:1:-2", "non-numeric"),
        ("aob.runs.events:1:2.5", "non-numeric"),
        ("aob.tasks.http:0:5", "not on an event topic"),
    ],
)
def test_malformed_positions_say_why(token: str, reason: str) -> None:
    with pytest.raises(BadPosition, match="malformed position") as caught:
        parse_position(token)
    assert reason in str(caught.value)
    assert caught.value.token == token


# --- through the schema, where no database is reached --------------------------------------


def _context() -> SimpleNamespace:
    # Every case below fails before a resolver touches the pool: None makes sure of it.
    return SimpleNamespace(pool=None, tenant="t", nodes=None, watcher=None, settings=None)


@pytest.mark.parametrize("first", [0, -1, MAX_PAGE + 1])
async def test_page_size_is_bounded(first: int) -> None:
    for query in (
        f"{{ runs(first: {first}) {{ edges {{ cursor }} }} }}",
        f"{{ workflows(first: {first}) {{ edges {{ cursor }} }} }}",
    ):
        result = await schema.execute(query, context_value=_context())
        assert result.errors, query
        assert f"first must be between 1 and {MAX_PAGE}" in result.errors[0].message


async def test_malformed_position_is_a_graphql_error() -> None:
    result = await schema.execute(
        '{ run(id: "r", after: "nonsense") { id } }', context_value=_context()
    )
    assert result.errors
    assert "malformed position" in result.errors[0].message


async def test_foreign_cursor_is_a_graphql_error() -> None:
    result = await schema.execute(
        '{ runs(after: "bm9wZQ==") { edges { cursor } } }', context_value=_context()
    )
    assert result.errors
    assert "not one this API issued" in result.errors[0].message


async def test_too_many_aliases_are_refused() -> None:
    fields = " ".join(f"a{i}: __typename" for i in range(MAX_ALIASES + 1))
    result = await schema.execute(f"{{ {fields} }}", context_value=_context())
    assert result.errors
    assert "aliases" in result.errors[0].message


async def test_too_many_tokens_are_refused() -> None:
    fields = " ".join(["__typename"] * 3_000)
    result = await schema.execute(f"{{ {fields} }}", context_value=_context())
    assert result.errors
    assert "token" in result.errors[0].message.lower()


async def test_limits_do_not_defeat_the_validation_cache() -> None:
    from strawberry.extensions.validation_cache import _get_validate_cache

    from query_api.limits import CACHE_SIZE

    query = "query CacheProbe { __typename }"
    await schema.execute(query, context_value=_context())
    cache: Any = _get_validate_cache(CACHE_SIZE)  # an lru_cache wrapper
    before = cache.cache_info().hits
    await schema.execute(query, context_value=_context())
    assert cache.cache_info().hits == before + 1


async def test_a_notification_wakes_every_waiter_holding_a_ticket() -> None:
    watcher = ProgressWatcher("postgresql://unused")
    tickets = [watcher.ticket() for _ in range(3)]
    watcher._wake_all()
    assert all(t.is_set() for t in tickets)
    # A ticket taken after the wake-up waits for the next one.
    later = watcher.ticket()
    assert not later.is_set()
    started = asyncio.get_running_loop().time()
    await watcher.wait(later, timeout=0.05)  # not listening: polls, returns after timeout
    assert asyncio.get_running_loop().time() - started >= 0.04


async def test_internal_faults_are_masked_but_client_mistakes_are_not() -> None:
    # pool=None makes the resolver fail as a database fault would: its text stays inside.
    result = await schema.execute('{ run(id: "r") { id } }', context_value=_context())
    assert result.errors
    assert result.errors[0].message == "Unexpected error."
    assert "NoneType" not in str(result.errors[0].formatted)
