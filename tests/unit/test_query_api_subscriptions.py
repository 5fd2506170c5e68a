"""Pure parts of the live subscriptions: where ``runEvents`` resumes, the coalescing hub,
and the ``runUpdated`` loop (its database reads replaced by a scripted sequence)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from auth import Principal
from query_api import live
from query_api.cursors import encode_cursor
from query_api.errors import BadCursor, BadPosition, NoSuchRun, Unauthenticated
from query_api.resume import ResumeFrom, check_partition, parse_resume
from query_api.run_changes import RunChanges
from schemas.position import Position
from schemas.topics import RUN_EVENTS, WORKFLOW_EVENTS

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --- where runEvents resumes -----------------------------------------------------------


def test_no_after_starts_at_the_first_event() -> None:
    assert parse_resume(None) == ResumeFrom(seq=0, position=None)
    assert parse_resume("") == ResumeFrom()
    assert parse_resume(None).offset == -1


def test_an_event_cursor_resumes_after_its_seq() -> None:
    assert parse_resume(encode_cursor(7)) == ResumeFrom(seq=7)


def test_a_position_resumes_after_its_offset() -> None:
    start = parse_resume(f"{RUN_EVENTS}:2:41")
    assert start == ResumeFrom(seq=0, position=Position(RUN_EVENTS, 2, 41))
    assert start.offset == 41


@pytest.mark.parametrize(
    ("after", "error", "says"),
    [
        ("not a cursor!", BadCursor, "not one this API issued"),
        (encode_cursor("seven"), BadCursor, "not an event cursor"),
        (encode_cursor(-1), BadCursor, "not an event cursor"),
        (encode_cursor(1, 2), BadCursor, "not one this API issued"),
        (f"{RUN_EVENTS}:x:1", BadPosition, "non-numeric"),
        (":0:1", BadPosition, "malformed position"),
        (f"{WORKFLOW_EVENTS}:0:1", BadPosition, f"not on {RUN_EVENTS}"),
        ("other.topic:0:1", BadPosition, "not on an event topic"),
    ],
)
def test_bad_after_values_say_what_is_wrong(after: str, error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        parse_resume(after)


def test_a_position_on_another_partition_than_the_runs_is_refused() -> None:
    start = parse_resume(f"{RUN_EVENTS}:2:41")
    check_partition(start, "r1", 2)
    check_partition(start, "r1", None)  # no event projected yet: nothing to compare
    check_partition(parse_resume(encode_cursor(3)), "r1", 5)  # cursors have no partition
    with pytest.raises(BadPosition, match="on partition 2, but run r1's events are on partition 5"):
        check_partition(start, "r1", 5)


# --- the hub -----------------------------------------------------------------------------


async def test_many_notifications_wake_a_busy_subscriber_once() -> None:
    hub = RunChanges(None)
    with hub.watch("r1") as wakeup, hub.watch("r2") as other:
        for _ in range(50):
            hub.notify("r1")
        assert wakeup.pending
        assert not other.pending  # another run's subscriber sleeps on
        await wakeup.wait()  # returns at once: a notification is pending
        assert not wakeup.pending  # all 50 were consumed by that one wake-up
        hub.notify("r1")
        assert wakeup.pending  # a change after the wake-up wakes it again
    assert hub.subscribers == 0


async def test_every_subscriber_of_a_run_is_woken() -> None:
    hub = RunChanges(None)
    with hub.watch("r1") as a, hub.watch("r1") as b:
        assert hub.subscribers == 2
        hub.notify("r1")
        assert a.pending and b.pending
    assert hub.subscribers == 0


async def test_a_lost_or_regained_listen_connection_wakes_everyone() -> None:
    hub = RunChanges(None)
    with hub.watch("r1") as a, hub.watch("r2") as b:
        hub.wake_all()
        assert a.pending and b.pending


def test_without_a_listen_connection_subscribers_poll_slowly() -> None:
    from query_api import run_changes

    assert RunChanges(None).poll_s == run_changes.DEAF_POLL_S
    assert run_changes.DEAF_POLL_S < run_changes.LISTENING_POLL_S


# --- the runUpdated loop -----------------------------------------------------------------


def _row(status: str, seconds: int, events: int) -> dict[str, Any]:
    return {
        "status": status,
        "updated_at": T0 + timedelta(seconds=seconds),
        "event_count": events,
    }


class Script:
    """What the database answers, read by read; after each read the hub is notified, as
    the projector would after committing a batch."""

    def __init__(self, hub: RunChanges, reads: list[dict[str, Any] | None]) -> None:
        self.hub, self.reads, self.count = hub, iter(reads), 0
        self.valid_key = True

    async def run_state(self, _pool: Any, tenant: str, run_id: str) -> dict[str, Any] | None:
        assert tenant == "acme"
        self.count += 1
        row = next(self.reads)
        self.hub.notify(run_id)
        return row

    async def authenticate(self, _pool: Any, authorization: str | None) -> Principal | None:
        assert authorization == "Bearer k"
        return Principal(tenant="acme", key_id="k") if self.valid_key else None


@pytest.fixture
def hub() -> RunChanges:
    return RunChanges(None)


@pytest.fixture
def context(hub: RunChanges) -> SimpleNamespace:
    forgotten: list[str] = []
    return SimpleNamespace(
        pool=None,
        tenant="acme",
        authorization="Bearer k",
        run_changes=hub,
        forgotten=forgotten,
        forget_run=forgotten.append,
    )


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch, hub: RunChanges) -> Any:
    def make(reads: list[dict[str, Any] | None]) -> Script:
        s = Script(hub, reads)
        monkeypatch.setattr(live.db, "run_state", s.run_state)
        monkeypatch.setattr(live, "authenticate", s.authenticate)
        return s

    return make


async def test_run_updates_skip_unchanged_reads_and_end_after_a_terminal_status(
    context: Any, script: Any
) -> None:
    s = script(
        [
            _row("PENDING", 0, 1),
            _row("PENDING", 0, 1),  # woken, but nothing the client sees changed
            _row("RUNNING", 1, 3),
            _row("RUNNING", 2, 4),  # same status, but later and with more events
            _row("RUNNING", 2, 4),
            _row("COMPLETED", 3, 6),
        ]
    )
    sent = [row async for row in live.run_updates(context, "r1")]
    assert [(r["status"], r["event_count"]) for r in sent] == [
        ("PENDING", 1),
        ("RUNNING", 3),
        ("RUNNING", 4),
        ("COMPLETED", 6),
    ]
    assert s.count == 6  # and no read after the terminal one
    assert context.forgotten == ["r1"] * 4  # each message re-reads the run's nodes
    assert context.run_changes.subscribers == 0


async def test_a_run_that_is_not_the_callers_is_an_error_before_any_message(
    context: Any, script: Any
) -> None:
    script([None])
    with pytest.raises(NoSuchRun, match="no run r1 for this key"):
        await anext(live.run_updates(context, "r1"))


async def test_a_key_revoked_during_a_subscription_ends_it(context: Any, script: Any) -> None:
    s = script([_row("RUNNING", 0, 1), _row("RUNNING", 1, 2)])
    updates = live.run_updates(context, "r1")
    assert (await anext(updates))["status"] == "RUNNING"
    s.valid_key = False
    with pytest.raises(Unauthenticated, match="no longer valid"):
        await anext(updates)
    assert s.count == 1  # the key is checked before the run is read again


async def test_a_key_of_another_tenant_is_not_taken_for_the_connections(
    context: Any, script: Any
) -> None:
    script([_row("RUNNING", 0, 1)])
    context.tenant = "other"  # the connection was authorised for another tenant
    with pytest.raises(Unauthenticated):
        await anext(live.run_updates(context, "r1"))


def test_the_promised_subscriptions_are_in_the_schema() -> None:
    # API.md's names; the SDL snapshot locks the rest.
    from query_api.schema import schema

    sdl = schema.as_str()
    assert "type Subscription {" in sdl
    assert "runUpdated(id: ID!): Run!" in sdl
    assert "runEvents(id: ID!, after: String = null): EventEdge!" in sdl


async def test_a_key_without_the_read_scope_gets_no_message(
    context: Any, script: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from query_api.errors import MissingScope

    script([_row("RUNNING", 0, 1)])

    async def submit_only(_pool: Any, _authorization: str | None) -> Principal:
        return Principal(tenant="acme", key_id="k", scopes=frozenset({"submit"}))

    monkeypatch.setattr(live, "authenticate", submit_only)
    with pytest.raises(MissingScope, match="lacks the 'read' scope"):
        await anext(live.run_updates(context, "r1"))
