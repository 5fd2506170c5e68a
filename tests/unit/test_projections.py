"""The pure part of the projections: decoding batches and folding run events into rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from projections.batch import RawRecord, decode_batch
from projections.runs import RunFold
from projections.workflows import fold_published
from schemas.codec import encode_event
from schemas.compiler import compile_workflow
from schemas.envelope import Event, system_actor
from schemas.events import (
    NodeFailed,
    NodeFailedPayload,
    NodeRetryPlanned,
    NodeRetryPlannedPayload,
    NodeScheduled,
    NodeScheduledPayload,
    NodeSkipped,
    NodeSkippedPayload,
    NodeStarted,
    NodeStartedPayload,
    NodeSucceeded,
    NodeSucceededPayload,
    RunCompleted,
    RunCompletedPayload,
    RunFailed,
    RunFailedPayload,
    RunStarted,
    RunStartedPayload,
    RunSubmitted,
    RunSubmittedPayload,
    WorkflowPublished,
    WorkflowPublishedPayload,
)
from schemas.workflow import WorkflowDefinition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REF = "cas://sha256:" + "a" * 64
DEFINITION = WorkflowDefinition.model_validate(
    {
        "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "transform"}],
        "edges": [{"from": "a", "to": "b"}],
    }
)


class Log:
    """Builds one run's events with increasing timestamps."""

    def __init__(self, run_id: str = "r1") -> None:
        self.run_id = run_id
        self.n = 0

    def __call__(self, cls: type[Event], payload: Any) -> Event:
        self.n += 1
        return cls(
            aggregate_id=self.run_id,
            correlation_id=self.run_id,
            occurred_at=T0 + timedelta(seconds=self.n),
            actor=system_actor("test", tenant="acme"),
            payload=payload,
        )

    def submitted(self) -> Event:
        ir = compile_workflow(DEFINITION)
        return self(
            RunSubmitted,
            RunSubmittedPayload(
                workflow_id="wf",
                workflow_name="demo",
                version=ir.version,
                input={"x": 1},
                definition=DEFINITION.canonical(),
                ir=ir,
                definition_ref=REF,
                ir_ref=REF,
            ),
        )


def sched(log: Log, node: str, attempt: int = 1) -> Event:
    return log(
        NodeScheduled,
        NodeScheduledPayload(node_id=node, node_type="noop", attempt=attempt, task_topic="t"),
    )


def started(log: Log, node: str, attempt: int = 1) -> Event:
    return log(NodeStarted, NodeStartedPayload(node_id=node, attempt=attempt, worker="w"))


def ok(log: Log, node: str, attempt: int = 1) -> Event:
    return log(
        NodeSucceeded,
        NodeSucceededPayload(
            node_id=node,
            attempt=attempt,
            output={"v": attempt},
            output_inline=True,
            output_ref=REF,
            output_size=7,
        ),
    )


def failed(log: Log, node: str, attempt: int = 1) -> Event:
    return log(NodeFailed, NodeFailedPayload(node_id=node, attempt=attempt, error="boom"))


def fold(events: list[Event]) -> RunFold:
    f = RunFold()
    for ev in events:
        f.apply(ev)
    return f


def test_outputs_a_completion_names_as_elsewhere_are_taken_from_the_node_rows() -> None:
    log = Log()
    large = log(
        NodeSucceeded,
        NodeSucceededPayload(
            node_id="b", attempt=1, output=None, output_inline=False, output_ref=REF, output_size=9
        ),
    )
    completed = RunCompletedPayload(output={}, output_elsewhere=["a", "b"])
    events = [log.submitted(), sched(log, "a"), ok(log, "a"), large]
    f = fold([*events, log(RunCompleted, completed)])
    # a (a v1 report: inline, and a ref) by value; b, too large to be inline, by reference
    assert f.runs["r1"].output == {"a": {"v": 1}, "b": {"$ref": REF}}


def test_a_run_from_submission_to_completion() -> None:
    log = Log()
    events = [
        log.submitted(),
        log(RunStarted, RunStartedPayload(version="v")),
        sched(log, "a"),
        started(log, "a"),
        ok(log, "a"),
        log(NodeSkipped, NodeSkippedPayload(node_id="b", reason="branch not taken")),
        log(RunCompleted, RunCompletedPayload(output={"a": {}})),
    ]
    f = fold(events)
    run = f.runs["r1"]
    assert (run.status, run.tenant, run.workflow_name, run.input) == (
        "COMPLETED",
        "acme",
        "demo",
        {"x": 1},
    )
    assert run.output == {"a": {}} and run.event_count == 7
    assert run.started_at == T0 + timedelta(seconds=2) and run.finished_at == T0 + timedelta(
        seconds=7
    )
    assert run.updated_at == T0 + timedelta(seconds=7)
    a, b = f.nodes[("r1", "a")], f.nodes[("r1", "b")]
    assert (a.status, a.attempts, a.successes, a.output, a.output_ref) == (
        "SUCCEEDED",
        1,
        1,
        {"v": 1},
        REF,
    )
    assert a.scheduled_at and a.started_at and a.finished_at
    assert (b.status, b.node_type) == ("SKIPPED", "transform")


def test_every_ir_node_starts_pending() -> None:
    f = fold([Log().submitted()])
    assert {k: n.status for k, n in f.nodes.items()} == {
        ("r1", "a"): "PENDING",
        ("r1", "b"): "PENDING",
    }
    assert f.runs["r1"].status == "PENDING"


def test_terminal_run_status_never_goes_back() -> None:
    log = Log()
    f = fold(
        [
            log.submitted(),
            log(RunFailed, RunFailedPayload(reason="x", node_id="a")),
            log(RunStarted, RunStartedPayload(version="v")),
            log(RunCompleted, RunCompletedPayload()),
        ]
    )
    assert f.runs["r1"].status == "FAILED" and f.runs["r1"].error == "node 'a': x"


def test_retries_restart_the_node_and_stale_attempts_are_ignored() -> None:
    log = Log()
    f = fold(
        [
            log.submitted(),
            sched(log, "a"),
            started(log, "a"),
            failed(log, "a"),
            sched(log, "a", 2),
            started(log, "a", 2),
        ]
    )
    a = f.nodes[("r1", "a")]
    assert (a.status, a.attempts, a.finished_at, a.error) == ("RUNNING", 2, None, "boom")
    f.apply(started(log, "a", 1))  # late event of attempt 1
    f.apply(failed(log, "a", 1))
    assert (a.status, a.attempts) == ("RUNNING", 2)
    f.apply(ok(log, "a", 2))
    assert (a.status, a.error, a.output) == ("SUCCEEDED", None, {"v": 2})
    f.apply(sched(log, "a", 3))  # success is final
    assert (a.status, a.attempts) == ("SUCCEEDED", 2)


def test_a_planned_retry_shows_the_next_attempt_scheduled_for_its_moment() -> None:
    log = Log()
    f = fold([log.submitted(), sched(log, "a"), started(log, "a"), failed(log, "a")])
    a = f.nodes[("r1", "a")]
    assert (a.status, a.attempts) == ("FAILED", 1)
    due = T0 + timedelta(minutes=5)
    f.apply(
        log(
            NodeRetryPlanned, NodeRetryPlannedPayload(node_id="a", attempt=2, due_at=due, delay_s=1)
        )
    )
    assert (a.status, a.attempts, a.scheduled_at, a.error) == ("SCHEDULED", 2, due, "boom")
    assert (a.started_at, a.finished_at) == (None, None)
    f.apply(sched(log, "a", 2))  # the timer fired: the same attempt, nothing moves back
    assert (a.status, a.attempts, a.scheduled_at) == ("SCHEDULED", 2, due)
    f.apply(started(log, "a", 2))
    assert a.status == "RUNNING"


def test_status_moves_forward_within_an_attempt() -> None:
    log = Log()
    f = fold([log.submitted(), sched(log, "a"), started(log, "a"), ok(log, "a"), started(log, "a")])
    assert f.nodes[("r1", "a")].status == "SUCCEEDED"


def test_successes_count_distinct_success_events() -> None:
    log = Log()
    f = fold([log.submitted(), ok(log, "a", 1), ok(log, "a", 2)])
    assert f.nodes[("r1", "a")].successes == 2  # the exactly-once check sees it


def test_events_of_an_unknown_run_and_node_still_make_rows() -> None:
    log = Log("r9")
    f = fold([sched(log, "zz")])
    assert f.runs["r9"].status == "PENDING" and f.runs["r9"].tenant == "acme"
    assert f.nodes[("r9", "zz")].status == "SCHEDULED"


def test_workflow_published_fold() -> None:
    rows: dict[tuple[str, str], Any] = {}
    versions: dict[tuple[str, str, str], Any] = {}

    def pub(version: str, at: int) -> WorkflowPublished:
        return WorkflowPublished(
            aggregate_id="wf",
            occurred_at=T0 + timedelta(seconds=at),
            actor=system_actor("t", "acme"),
            payload=WorkflowPublishedPayload(
                workflow_id="wf",
                name="demo",
                version=version,
                definition={"nodes": []},
                definition_ref=REF,
                ir_ref=REF,
            ),
        )

    fold_published(rows, versions, pub("v1", 1))
    fold_published(rows, versions, pub("v2", 2))
    row = rows[("acme", "wf")]
    assert row.latest_version == "v2" and row.created_at == T0 + timedelta(seconds=1)
    assert set(versions) == {("acme", "wf", "v1"), ("acme", "wf", "v2")}


def test_decode_batch_keeps_poison_and_offsets() -> None:
    ev = Log().submitted()
    _, value, _ = encode_event(ev)
    batch = decode_batch(
        [
            RawRecord("aob.runs.events", 0, 5, value),
            RawRecord("aob.runs.events", 0, 6, b"not json"),
            RawRecord("aob.runs.events", 1, 9, b'{"type": "no.such"}'),
        ]
    )
    assert [pe.event.event_id for pe in batch.events] == [ev.event_id]
    assert [(p.position.offset, "JSON" in p.reason) for p in batch.poison] == [
        (6, True),
        (9, False),
    ]
    assert batch.next_offsets == {("aob.runs.events", 0): 7, ("aob.runs.events", 1): 10}
    assert len(batch) == 3
