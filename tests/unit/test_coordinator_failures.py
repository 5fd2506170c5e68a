"""Nothing wedges the coordinator: a record it cannot decide on, whose decision it cannot
send, or whose run's state it cannot load fails that run (a RunFailed, the record parked in
the dead-letter topic with the reason) and the partition goes on.

The table is a dict and the producer a recorder (``test_coordinator_batches``), which here
can refuse records as a broker does: by failing their acknowledgement.
"""

from __future__ import annotations

import asyncio
import json
import os
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from processors import coordinator as coordinator_module
from processors import outbox, stored
from processors.config import CoordinatorConfig
from processors.coordinator import Coordinator, partition_marker
from processors.recovery import Rebuilt
from processors.stored import Finished, Live, decode, encode
from projections.runs import RunFold
from run_model import RunStatus, step
from run_model.testing import EPOCH, build_ir, run_submitted, started, succeeded
from schemas.codec import decode_event, encode_event
from schemas.envelope import Event
from schemas.events import (
    MAX_EVENT_BYTES,
    RunCompleted,
    RunFailed,
    RunSubmitted,
    RunWarning,
)
from schemas.tasks import MAX_TASK_BYTES
from tests.unit.test_coordinator_batches import Broker, record, tasks_in

RUNS = CoordinatorConfig().runs_topic
DLQ = CoordinatorConfig().dlq_topic
TEXT_16K = "x" * 16_000  # a 16 KB output: still inline (INLINE_OUTPUT_MAX_BYTES)


class Recording(Broker):
    """Acknowledges every record at once, and keeps each record's headers."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[Any] = []

    async def send(self, topic: str, key: Any, value: Any, p: Any, t: Any, h: Any) -> Any:
        ack = await super().send(topic, key, value, p, t, h)
        self.headers.append(h)
        self.answer(topic, value, ack)
        return ack

    def answer(self, topic: str, value: bytes | None, ack: asyncio.Future[None]) -> None:
        ack.set_result(None)


class Refusing(Recording):
    """A broker whose run topic refuses, with the acknowledgement, every record larger than
    ``limit``; ``caught_up`` makes the producer's ``send`` raise that refusal for the record
    sent right after a refused one, as aiokafka does for a record that waited for room behind
    it (faust wraps it in ProducerSendError)."""

    def __init__(self, limit: int, caught_up: bool = False) -> None:
        super().__init__()
        self.limit = limit
        self.caught_up = caught_up
        self._raise_next = False
        self.raised = 0

    async def send(self, topic: str, key: Any, value: Any, p: Any, t: Any, h: Any) -> Any:
        if self._raise_next:
            self._raise_next = False
            self.raised += 1
            error = MessageSizeTooLargeError()
            raise ProducerSendError(f"Error while sending: {error!r}") from error
        return await super().send(topic, key, value, p, t, h)

    def answer(self, topic: str, value: bytes | None, ack: asyncio.Future[None]) -> None:
        if topic == RUNS and len(value or b"") > self.limit:
            ack.set_exception(MessageSizeTooLargeError())
            self._raise_next = self.caught_up
        else:
            ack.set_result(None)


def coordinator(
    broker: Broker | None = None, table: dict[bytes, bytes] | None = None, **kwargs: Any
) -> tuple[Coordinator, Any, dict[bytes, bytes]]:
    broker = broker or Broker()
    table = {partition_marker(0): b"0"} if table is None else table
    parts: Any = SimpleNamespace(app=SimpleNamespace(producer=broker), table=table, runs_topic=None)
    config = CoordinatorConfig()
    return Coordinator(parts, config, clock=lambda: EPOCH, **kwargs), broker, table


def events_in(broker: Broker) -> list[Event]:
    return [decode_event(v) for topic, _, v, _ in broker.sent if topic == RUNS]


def parked(broker: Broker) -> list[tuple[bytes | None, str]]:
    """(value, reason) of every record sent to the dead-letter topic."""
    out = []
    for (topic, _, value, _), headers in zip(broker.sent, broker.headers, strict=True):
        if topic == DLQ:
            out.append((value, dict(headers)["aob-dlq-reason"].decode()))
    return out


def join_of(n: int) -> Any:
    """``n`` roots that all lead to one join node ``j``."""
    roots = {f"a{i}": "noop" for i in range(n)}
    return build_ir({**roots, "j": "noop"}, [(a, "j") for a in roots])


# --- sizes ---------------------------------------------------------------------------------


async def test_70_sinks_of_16_kb_complete_with_a_small_event_and_the_read_model_has_all() -> None:
    c, broker, _ = coordinator(Recording())
    ir = build_ir({f"s{i}": "noop" for i in range(70)}, [])
    submitted = run_submitted("r-wide", ir)
    await c.handle(*record(submitted, 0))
    reports = [succeeded(task, {"text": TEXT_16K}) for task in tasks_in(broker)]
    await c.handle_batch([record(ev, 1 + i) for i, ev in enumerate(reports)])

    sent = {topic for topic, _, _, _ in broker.sent}
    assert DLQ not in sent
    (completed,) = [e for e in events_in(broker) if isinstance(e, RunCompleted)]
    assert len(encode_event(completed)[1]) < MAX_EVENT_BYTES // 2
    inline, elsewhere = completed.payload.output, completed.payload.output_elsewhere
    assert elsewhere and set(inline) | set(elsewhere) == set(ir.nodes)
    assert not set(inline) & set(elsewhere)

    fold = RunFold()
    decisions = events_in(broker)
    for ev in [submitted, *reports, *decisions]:  # the read model sees every event once
        fold.apply(ev)
    assert fold.runs["r-wide"].output == {node: {"text": TEXT_16K} for node in ir.nodes}


async def test_a_task_larger_than_a_task_may_be_fails_its_run_and_the_next_run_goes_on() -> None:
    c, broker, table = coordinator(Recording())
    first = run_submitted("r-join", join_of(70))
    await c.handle(*record(first, 0))
    reports = [succeeded(task, {"text": TEXT_16K}) for task in tasks_in(broker)]
    other = run_submitted("r-next", build_ir({"a": "noop"}, []))
    broker.sent.clear()
    broker.headers.clear()
    batch = [record(ev, 1 + i) for i, ev in enumerate(reports)]
    batch.append(record(other, len(batch) + 1))
    await c.handle_batch(batch)

    ((value, reason),) = parked(broker)
    assert value == encode_event(reports[-1])[1]  # the record whose decision was too large
    assert "task of node 'j'" in reason and str(MAX_TASK_BYTES) in reason
    failures = [e for e in events_in(broker) if isinstance(e, RunFailed)]
    assert [f.aggregate_id for f in failures] == ["r-join"]
    assert "task of node 'j'" in failures[0].payload.reason
    assert len(failures[0].payload.reason) <= 2_000
    assert [t.node_id for t in tasks_in(broker)] == ["a"]  # j's task was never sent; r-next's was
    assert decode(b"r-join", table[b"r-join"]) == Finished(RunStatus.FAILED)
    assert decode(b"r-next", table[b"r-next"]).state.status is RunStatus.RUNNING
    assert table[partition_marker(0)] == str(len(batch) + 1).encode()


async def test_an_event_larger_than_an_event_may_be_fails_its_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No decision of the run model grows past MAX_EVENT_BYTES any more; the check stays for
    # whatever still would (here: a limit far lower than the default).
    monkeypatch.setattr(outbox, "MAX_EVENT_BYTES", 8_000)
    c, broker, table = coordinator(Recording())
    await c.handle(*record(run_submitted("r-big", build_ir({"a": "noop"}, [])), 0))
    (task,) = tasks_in(broker)
    done = succeeded(task, {"text": "y" * 10_000})
    await c.handle(*record(done, 1))
    assert not [e for e in events_in(broker) if isinstance(e, RunCompleted)]
    (failure,) = [e for e in events_in(broker) if isinstance(e, RunFailed)]
    assert "run.completed" in failure.payload.reason and "8000" in failure.payload.reason
    ((value, _),) = parked(broker)
    assert value == encode_event(done)[1]
    assert decode(b"r-big", table[b"r-big"]) == Finished(RunStatus.FAILED)


async def test_a_decision_that_does_not_encode_fails_its_run() -> None:
    # A lone surrogate in an output decodes (JSON escapes it) but encodes nowhere: the task
    # of the node after it cannot be made.
    c, broker, table = coordinator(Recording())
    chain = build_ir({"a": "noop", "b": "noop"}, [("a", "b")])
    await c.handle(*record(run_submitted("r-odd", chain), 0))
    (task,) = tasks_in(broker)
    raw = json.loads(encode_event(succeeded(task, {"s": "ok"}))[1])
    raw["payload"]["output"] = {"s": "\ud800"}
    value = json.dumps(raw).encode()  # ensure_ascii: the surrogate travels escaped
    await c.handle(b"r-odd", value, (0, 1))
    (failure,) = [e for e in events_in(broker) if isinstance(e, RunFailed)]
    assert "cannot be encoded" in failure.payload.reason
    assert parked(broker)[0][0] == value
    assert decode(b"r-odd", table[b"r-odd"]) == Finished(RunStatus.FAILED)


# --- a bug in the decider ------------------------------------------------------------------


async def test_a_bug_in_the_decider_fails_that_run_and_the_next_run_of_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def step_with_a_bug(state: Any, event: Event, *args: Any) -> Any:
        if event.aggregate_id == "r-bug":
            raise RuntimeError("a bug")
        return step(state, event, *args)

    monkeypatch.setattr(coordinator_module, "step", step_with_a_bug)
    c, broker, table = coordinator(Recording())
    buggy = run_submitted("r-bug", build_ir({"a": "noop"}, []))
    fine = run_submitted("r-fine", build_ir({"a": "noop"}, []))
    await c.handle_batch([record(buggy, 0), record(fine, 1)])
    ((value, reason),) = parked(broker)
    assert value == encode_event(buggy)[1] and "RuntimeError('a bug')" in reason
    (failure,) = [e for e in events_in(broker) if isinstance(e, RunFailed)]
    assert failure.aggregate_id == "r-bug" and failure.causation_id == buggy.event_id
    assert decode(b"r-bug", table[b"r-bug"]) == Finished(RunStatus.FAILED)
    assert decode(b"r-fine", table[b"r-fine"]).state.status is RunStatus.RUNNING
    assert table[partition_marker(0)] == b"2"


# --- what the broker refuses after all ------------------------------------------------------


@pytest.mark.parametrize("caught_up", [False, True], ids=["alone", "with-the-next-record"])
async def test_a_record_the_broker_refuses_fails_its_run_and_the_rest_is_stored(
    caught_up: bool,
) -> None:
    # A broker whose topics take less than the coordinator checks for: the refusal comes
    # with the acknowledgement, after the whole outbox was sent.
    broker = Refusing(limit=10_000, caught_up=caught_up)
    c, _, table = coordinator(broker)
    await c.handle(*record(run_submitted("r-wide", build_ir({"a": "noop"}, [])), 0))
    (task,) = tasks_in(broker)
    other = run_submitted("r-other", build_ir({"b": "noop"}, []))
    broker.sent.clear()
    broker.headers.clear()
    done = succeeded(task, {"text": TEXT_16K})  # the run.completed after it is 16 KB
    await c.handle_batch([record(done, 1), record(other, 2)])

    (failure,) = [e for e in events_in(broker) if isinstance(e, RunFailed)]
    assert failure.aggregate_id == "r-wide" and "refused" in failure.payload.reason
    assert [v for v, _ in parked(broker)] == [encode_event(done)[1]]
    assert decode(b"r-wide", table[b"r-wide"]) == Finished(RunStatus.FAILED)
    other_state = decode(b"r-other", table[b"r-other"])
    assert isinstance(other_state, Live) and other_state.state.status is RunStatus.RUNNING
    assert broker.raised == (1 if caught_up else 0)
    assert "b" in {t.node_id for t in tasks_in(broker)}  # sent (again, if it was caught up)
    assert table[partition_marker(0)] == b"3"


async def test_a_batch_handled_again_after_a_crash_decides_the_same_ids() -> None:
    broker = Refusing(limit=10_000)
    c, _, table = coordinator(broker)
    await c.handle(*record(run_submitted("r-wide", build_ir({"a": "noop"}, [])), 0))
    (task,) = tasks_in(broker)
    stored_before = dict(table)
    batch = [
        record(succeeded(task, {"text": TEXT_16K}), 1),
        record(run_submitted("r-other", build_ir({"b": "noop"}, [])), 2),
    ]
    broker.sent.clear()
    await c.handle_batch(batch)
    first = [e.event_id for e in events_in(broker)]

    # A coordinator that crashed before storing anything meets the same batch again.
    again, broker2, _ = coordinator(Refusing(limit=10_000), dict(stored_before))
    await again.handle_batch(batch)
    assert [e.event_id for e in events_in(broker2)] == first
    assert any(isinstance(e, RunFailed) for e in events_in(broker2))


async def test_a_fault_of_the_connection_is_not_a_refusal_and_stores_nothing() -> None:
    c, broker, table = coordinator()
    handling = asyncio.ensure_future(
        c.handle(*record(run_submitted("r-down", build_ir({"a": "noop"}, [])), 0))
    )
    await asyncio.sleep(0.01)
    broker.ack_all(ConnectionError("broker gone"))
    with pytest.raises(ConnectionError):
        await handling
    assert b"r-down" not in table and table[partition_marker(0)] == b"0"
    assert not [e for e in events_in(broker) if isinstance(e, RunFailed)]


# --- a state that does not load ------------------------------------------------------------


def history(run_id: str) -> tuple[list[Event], Any]:
    """A run's first events (submitted, a started) and its task for ``a``."""
    submitted = run_submitted(run_id, build_ir({"a": "noop", "b": "noop"}, [("a", "b")]))
    _, decision = step(None, submitted, EPOCH)
    (task,) = decision.tasks
    return [submitted, *decision.events, started(task)], task


async def test_a_state_that_does_not_load_is_rebuilt_from_the_log_and_the_run_goes_on() -> None:
    events, task = history("r-corrupt")
    state = None
    for ev in events:
        state, _ = step(state, ev, EPOCH)
    asked: list[tuple[str, int, int]] = []

    async def recover_run(run_id: str, partition: int, before: int) -> Rebuilt:
        asked.append((run_id, partition, before))
        assert state is not None
        return Rebuilt(states={run_id: state})

    table = {partition_marker(0): b"7", b"r-corrupt": b"Z0:not a state at all"}
    c, broker, table = coordinator(Recording(), table, recover_run=recover_run)
    await c.handle(*record(succeeded(task, {"ok": True}), 7))
    assert asked == [("r-corrupt", 0, 7)]
    assert [t.node_id for t in tasks_in(broker)] == ["b"]
    stored = decode(b"r-corrupt", table[b"r-corrupt"])
    assert isinstance(stored, Live) and stored.state.nodes["a"].output == {"ok": True}
    assert not parked(broker)


async def test_a_state_that_cannot_be_rebuilt_fails_its_run() -> None:
    _, task = history("r-lost")
    table = {partition_marker(0): b"7", b"r-lost": b"Z0:not a state at all"}
    c, broker, table = coordinator(Recording(), table)  # the log has nothing of it
    report = succeeded(task, {"ok": True})
    await c.handle(*record(report, 7))
    (failure,) = [e for e in events_in(broker) if isinstance(e, RunFailed)]
    assert "does not load" in failure.payload.reason
    assert failure.causation_id == report.event_id
    assert [v for v, _ in parked(broker)] == [encode_event(report)[1]]
    assert decode(b"r-lost", table[b"r-lost"]) == Finished(RunStatus.FAILED)


async def test_the_ticker_skips_a_state_that_does_not_load_and_wakes_its_run() -> None:
    events, _ = history("r-fine")
    fine = None
    for ev in events:
        fine, _ = step(fine, ev, EPOCH)
    assert fine is not None
    table = {
        partition_marker(0): b"7",
        b"r-corrupt": b"Z3:not a state at all",
        b"r-fine": encode(fine, 0),
    }
    c, broker, table = coordinator(Recording(), table)
    live = c.live_states()
    assert [s.run_id for s, _ in live] == ["r-fine"]
    assert c.unreadable == {"r-corrupt": 3}
    assert await c.ticker.wake(c.unreadable) == 1
    ((topic, key, value, partition),) = broker.sent
    woken = decode_event(value)
    assert (topic, key, partition) == (RUNS, b"r-corrupt", 3)
    assert isinstance(woken, RunWarning) and "rebuilt" in woken.payload.message


async def test_a_run_whose_state_cannot_be_stored_fails_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A state is a record of the changelog: one larger than a record may be (here: a limit
    # lowered so that a run input of 8 KB of noise passes it) fails its run.
    monkeypatch.setattr(stored, "MAX_STATE_BYTES", 3_000, raising=False)
    c, broker, table = coordinator(Recording())
    noisy = run_submitted("r-noisy", build_ir({"a": "noop"}, []), os.urandom(4_000).hex())
    quiet = run_submitted("r-quiet", build_ir({"a": "noop"}, []))
    await c.handle_batch([record(noisy, 0), record(quiet, 1)])
    noisy_events = [e for e in events_in(broker) if e.aggregate_id == "r-noisy"]
    assert [type(e) for e in noisy_events] == [RunFailed]  # its decisions were never sent
    assert "cannot be stored" in noisy_events[0].payload.reason
    assert [v for v, _ in parked(broker)] == [encode_event(noisy)[1]]
    assert decode(b"r-noisy", table[b"r-noisy"]) == Finished(RunStatus.FAILED)
    assert decode(b"r-quiet", table[b"r-quiet"]).state.status is RunStatus.RUNNING
    assert [t.run_id for t in tasks_in(broker)] == ["r-quiet"]


async def test_a_record_that_does_not_decode_is_parked_and_the_next_goes_on() -> None:
    c, broker, table = coordinator(Recording())
    deep = b'{"type": "run.started", "payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    fine = run_submitted("r-fine", build_ir({"a": "noop"}, []))
    await c.handle_batch([(b"r-x", deep, (0, 0)), record(fine, 1)])
    ((value, reason),) = parked(broker)
    assert value == deep and "too deep" in reason
    assert decode(b"r-fine", table[b"r-fine"]).state.status is RunStatus.RUNNING


async def test_a_rebuilt_partition_keeps_a_state_it_cannot_store_as_one_that_does_not_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The table lost the partition's history; a run rebuilt from the log has no stored form:
    # it is kept as a state that does not load, so that its next record fails it.
    monkeypatch.setattr(stored, "MAX_STATE_BYTES", 3_000, raising=False)
    events, task = history("r-noisy")
    submitted = events[0]
    assert isinstance(submitted, RunSubmitted)
    payload = submitted.payload.model_copy(update={"input": os.urandom(4_000).hex()})
    noisy = None
    for ev in [submitted.model_copy(update={"payload": payload}), *events[1:]]:
        noisy, _ = step(noisy, ev, EPOCH)
    assert noisy is not None

    async def recover(partition: int, before: int) -> Rebuilt:
        assert noisy is not None
        return Rebuilt(states={"r-noisy": noisy})

    c, broker, table = coordinator(Recording(), {}, recover=recover)
    await c.handle(*record(succeeded(task, {}), 5))
    (failure,) = [e for e in events_in(broker) if isinstance(e, RunFailed)]
    assert "could not be stored" in failure.payload.reason
    assert decode(b"r-noisy", table[b"r-noisy"]) == Finished(RunStatus.FAILED)
    assert c.runs_failed == 1
