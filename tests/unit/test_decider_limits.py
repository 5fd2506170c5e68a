"""Every decision fits in one record, whatever the run was given: outputs beyond a budget are
named instead of carried, patch refusals are cut to size, texts copied from outside are
capped, and a run that cannot go on is failed with an id derived from its cause."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from run_model import RunStatus, step
from run_model.abort import fail_run
from run_model.completion import RUN_OUTPUT_INLINE_BYTES, run_output
from run_model.limits import (
    PATCH_MAX_REASONS,
    PATCH_REASON_MAX_CHARS,
    TEXT_MAX_CHARS,
    capped,
    patch_refusal,
)
from run_model.testing import (
    EPOCH,
    approval_requested,
    approval_submitted,
    build_ir,
    cancel_requested,
    failed,
    patch_submitted,
)
from schemas.codec import encode_event
from schemas.events import (
    MAX_EVENT_BYTES,
    ApprovalDecided,
    PatchApplied,
    PatchRejected,
    RunCancelled,
    RunCompleted,
    RunFailed,
)
from schemas.ir import WorkflowIR
from tests.unit.test_decider import Harness

TEXT_16K = "x" * 16_000
# The module (``run_model.decide`` is also the name of the function the package exports).
decide_module = importlib.import_module("run_model.decide")


def wide(n: int) -> Harness:
    return Harness(build_ir({f"s{i}": "noop" for i in range(n)}, []))


def with_configs(ir: WorkflowIR, config_bytes: int) -> WorkflowIR:
    """``ir`` with every node given a config of about ``config_bytes`` bytes."""
    nodes = {
        node_id: n.model_copy(update={"config": {"blob": "c" * config_bytes}})
        for node_id, n in ir.nodes.items()
    }
    return ir.model_copy(update={"nodes": nodes})


def only(events: list[Any], kind: type) -> Any:
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, [type(e).__name__ for e in events]
    return found[0]


# --- a run's output ------------------------------------------------------------------------


def test_sink_outputs_beyond_the_budget_are_named_and_the_run_model_has_them_all() -> None:
    h = wide(70)
    for i in range(70):
        events = h.succeed(f"s{i}", {"text": TEXT_16K})
    completed = only(events, RunCompleted)
    inline, elsewhere = completed.payload.output, completed.payload.output_elsewhere
    assert len(encode_event(completed)[1]) <= RUN_OUTPUT_INLINE_BYTES + 16 * 1024
    assert len(inline) == 16 and elsewhere == [f"s{i}" for i in range(16, 70)]
    assert run_output(h.run) == {f"s{i}": {"text": TEXT_16K} for i in range(70)}


def test_outputs_that_fit_are_all_inline_as_before() -> None:
    h = wide(3)
    for i in range(3):
        events = h.succeed(f"s{i}", {"n": i})
    completed = only(events, RunCompleted)
    assert completed.payload.output == {f"s{i}": {"n": i} for i in range(3)}
    assert completed.payload.output_elsewhere == []


# --- patches -------------------------------------------------------------------------------


def test_a_refusal_that_quotes_a_large_definition_and_patch_stays_small() -> None:
    # jsonpatch's failed `test` quotes the document and the value tested: a 145 KB patch of
    # a run with a 900 KB definition made a refusal of over 1 MB.
    h = Harness(with_configs(build_ir({f"n{i}": "noop" for i in range(30)}, []), 30_000))
    ops = [{"op": "test", "path": "", "value": {"big": "v" * 145_000}}]
    rejection = only(h.feed(patch_submitted("run-1", ops)), PatchRejected)
    assert len(encode_event(rejection)[1]) < 10_000
    (reason,) = rejection.payload.reasons
    assert reason.startswith("operation 0 (test ): the test failed")
    assert len(reason) <= PATCH_REASON_MAX_CHARS


def test_a_stale_patch_of_a_run_with_a_huge_definition_is_refused_without_it() -> None:
    h = Harness(with_configs(build_ir({f"n{i}": "noop" for i in range(40)}, []), 30_000))
    ops = [{"op": "add", "path": "/nodes/-", "value": {"id": "x", "type": "noop"}}]
    events = h.feed(patch_submitted("run-1", ops, base_version="an older one"))
    rejection = only(events, PatchRejected)
    assert rejection.payload.current_definition is None
    assert "too large to send" in rejection.payload.reasons[-1]
    assert len(encode_event(rejection)[1]) < MAX_EVENT_BYTES // 10


def test_a_stale_patch_still_gets_the_current_definition_when_it_fits() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    ops = [{"op": "add", "path": "/nodes/-", "value": {"id": "x", "type": "noop"}}]
    rejection = only(h.feed(patch_submitted("run-1", ops, base_version="old")), PatchRejected)
    assert rejection.payload.current_definition == h.run.current_definition()


def test_a_patch_with_many_broken_rules_gets_the_first_fifty_and_a_count() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    ops = [{"op": "add", "path": "/nodes/-", "value": {"id": f"x{i}"}} for i in range(80)]
    reasons = only(h.feed(patch_submitted("run-1", ops)), PatchRejected).payload.reasons
    assert len(reasons) == PATCH_MAX_REASONS + 1
    assert reasons[-1] == "… and 30 more reasons"


def test_a_patch_whose_applied_event_would_be_too_large_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Measured on the event itself, envelope and lists of nodes included (a limit lowered
    # here, so that a small patch reaches it).
    monkeypatch.setattr(decide_module, "MAX_EVENT_BYTES", 6_000, raising=False)
    h = Harness(build_ir({"a": "noop"}, []))
    big = {"id": "x", "type": "noop", "config": {"blob": "b" * 5_000}}
    ops = [
        {"op": "add", "path": "/nodes/-", "value": big},
        {"op": "add", "path": "/edges/-", "value": {"from": "a", "to": "x"}},
    ]
    events = h.feed(patch_submitted("run-1", ops))
    assert not [e for e in events if isinstance(e, PatchApplied)]
    (reason,) = only(events, PatchRejected).payload.reasons
    assert "run.patch_applied" in reason and "6000" in reason
    assert h.run.patches == [] and "x" not in h.run.nodes


# --- texts from outside --------------------------------------------------------------------


def test_a_node_error_copied_into_the_run_failure_is_capped() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    task = h.open_tasks.pop("a")
    huge = failed(task, "e" * 100, retryable=False)
    huge = huge.model_copy(
        update={"payload": huge.payload.model_copy(update={"error": "e" * 500_000})}
    )
    failure = only(h.feed(huge), RunFailed)
    assert len(failure.payload.reason) <= TEXT_MAX_CHARS
    assert "more characters" in failure.payload.reason


def test_a_cancel_reason_and_an_approval_comment_are_capped() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    cancel = cancel_requested("run-1")
    cancel = cancel.model_copy(
        update={"payload": cancel.payload.model_copy(update={"reason": "r" * 100_000})}
    )
    cancelled = only(h.feed(cancel), RunCancelled)
    assert cancelled.payload.reason is not None and len(cancelled.payload.reason) <= 2_000

    approving = Harness(build_ir({"ok": "hitl"}, []), run_id="run-2")
    approving.feed(approval_requested(approving.task("ok")))
    submitted = approval_submitted("run-2", "ok", "approved")
    submitted = submitted.model_copy(
        update={"payload": submitted.payload.model_copy(update={"comment": "c" * 100_000})}
    )
    decided = only(approving.feed(submitted), ApprovalDecided)
    assert decided.payload.comment is not None and len(decided.payload.comment) <= 4_000


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=5_000), st.integers(min_value=41, max_value=3_000))
def test_a_capped_text_is_short_and_always_encodes(text: str, limit: int) -> None:
    cut = capped(text, limit)
    assert len(cut) <= limit
    cut.encode("utf-8")  # no lone surrogate survives
    if len(text) <= limit and text.encode("utf-8", "replace").decode("utf-8") == text:
        assert cut == text


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.text(min_size=0, max_size=3_000), max_size=120),
    st.integers(min_value=0, max_value=1_200_000),
)
def test_any_patch_refusal_fits_in_an_event(reasons: list[str], definition_bytes: int) -> None:
    definition = {"nodes": [{"id": "a", "type": "noop", "config": {"b": "d" * definition_bytes}}]}
    payload = patch_refusal("p-1", reasons, "v1", definition)
    assert len(payload.model_dump_json()) < MAX_EVENT_BYTES - 16 * 1024
    assert len(payload.reasons) <= PATCH_MAX_REASONS + 2


# --- failing a run ------------------------------------------------------------------------


def test_failing_a_run_is_a_decision_with_an_id_from_its_cause() -> None:
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")]))
    cause = failed(h.task("a"))
    state, failure = fail_run(h.run, cause, "why " * 10_000, EPOCH)
    _, again = fail_run(h.run, cause, "why " * 10_000, EPOCH)
    assert failure == again and failure.causation_id == cause.event_id
    assert (
        failure.event_id != only(h.feed(failed(h.task("a"), retryable=False)), RunFailed).event_id
    )
    assert len(failure.payload.reason) <= TEXT_MAX_CHARS
    assert state is not None and state.status is RunStatus.FAILED
    assert cause.event_id in state.applied
    # The run's own RunFailed coming back through the log is an echo: nothing more happens.
    assert step(state, failure, EPOCH)[0] is state


def test_failing_a_run_that_has_no_state_yet_still_decides_its_failure() -> None:
    submitted = Harness(build_ir({"a": "noop"}, [])).log[0]
    state, failure = fail_run(None, submitted, "no state", EPOCH)
    assert state is None and failure.aggregate_id == submitted.aggregate_id
    assert failure.actor.tenant == submitted.actor.tenant
