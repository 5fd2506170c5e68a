"""The coordinator's stored states: compact while the run lives, a few bytes once it is over."""

from __future__ import annotations

import base64
import os
import zlib

import pytest

from processors.errors import StateCorrupt, StateUnstorable
from processors.stored import (
    Finished,
    Live,
    Workflows,
    decode,
    encode,
    encode_unstorable,
    stored_partition,
)
from run_model import RunStatus
from run_model.testing import build_ir
from tests.unit.test_decider import Harness


def test_a_live_state_round_trips_with_its_partition_and_is_compressed() -> None:
    h = Harness(build_ir({f"n{i}": "noop" for i in range(30)}, []))
    raw = encode(h.run, partition=2)
    assert decode(b"run-1", raw) == Live(h.run, 2)
    assert len(raw) < len(h.run.model_dump_json()) / 3


FANOUT = build_ir(
    {f"n{i}": "noop" for i in range(10)},
    [("n0", f"n{i}") for i in range(1, 9)] + [(f"n{i}", "n9") for i in range(1, 9)],
)


def test_states_of_one_version_are_read_with_one_ir_and_definition_between_them() -> None:
    # Each run's IR and definition are its own, as decoded from its run.submitted.
    a, b = (Harness(FANOUT.model_copy(deep=True), run_id=f"run-{n}") for n in "ab")
    b.succeed("n0")
    raw_a, raw_b = encode(a.run, partition=0), encode(b.run, partition=3)
    loaded_a, loaded_b = decode(b"run-a", raw_a), decode(b"run-b", raw_b)
    assert (loaded_a, loaded_b) == (Live(a.run, 0), Live(b.run, 3))
    assert isinstance(loaded_a, Live) and isinstance(loaded_b, Live)
    assert a.run.ir is not b.run.ir  # read back, they share one
    assert loaded_a.state.ir is loaded_b.state.ir
    assert loaded_a.state.definition is loaded_b.state.definition
    # Each stored form still holds the whole state: the workflow part, then the run's own.
    (length,) = {raw.split(b":", 2)[1] for raw in (raw_a, raw_b)}
    workflows = {raw.split(b":", 2)[2][: int(length)] for raw in (raw_a, raw_b)}
    assert len(workflows) == 1
    assert decode(b"run-b", raw_b) == decode(b"run-b", raw_b)  # the cache does not drift


def test_a_state_whose_definition_differs_is_stored_with_its_own() -> None:
    h = Harness(FANOUT)
    encode(h.run, partition=0)  # the version's workflow part is now known
    changed = h.run.model_copy(update={"definition": {**(h.run.definition or {}), "x": 1}})
    loaded = decode(b"run-1", encode(changed, partition=0))
    assert isinstance(loaded, Live) and loaded.state.definition == changed.definition
    assert loaded == Live(changed, 0)


def test_a_state_takes_the_workflow_its_version_shares_if_equal() -> None:
    workflows = Workflows()
    first, second = (Harness(FANOUT.model_copy(deep=True), run_id=f"run-{n}") for n in "ab")
    assert workflows.shared(second.run) is second.run, "no state of its version written yet"
    workflows.written(first.run)

    shared = workflows.shared(second.run)
    assert shared.ir is first.run.ir and shared.definition is first.run.definition
    assert shared == second.run
    assert workflows.shared(shared) is shared, "shared already: nothing to compare or copy"

    # The same version with another IR (a producer that lied about it) keeps its own.
    other_ir = FANOUT.model_copy(update={"roots": ["n9"]})
    other = second.run.model_copy(update={"ir": other_ir})
    assert workflows.shared(other).ir is other_ir


def test_workflow_parts_are_kept_for_so_many_versions() -> None:
    workflows = Workflows(size=2)
    runs = [Harness(build_ir({f"v{v}": "noop"}, []), run_id=f"run-{v}").run for v in range(3)]
    parts = [workflows.written(run) for run in runs]
    assert len(set(parts)) == 3
    first = workflows.read(parts[0])  # forgotten: read from its bytes again
    assert first[0] == runs[0].ir and first[0] is not runs[0].ir
    assert workflows.read(parts[2])[0] is runs[2].ir  # remembered as written


def test_a_state_stored_whole_by_an_earlier_release_still_loads() -> None:
    h = Harness(FANOUT)
    raw = b"Z5:" + zlib.compress(h.run.model_dump_json().encode())
    assert decode(b"run-1", raw) == Live(h.run, 5)
    assert stored_partition(raw) == 5
    assert stored_partition(encode(h.run, partition=7)) == 7


def test_a_finished_run_is_kept_as_its_status_only() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    h.succeed("a")
    raw = encode(h.run, partition=0)
    assert raw == b"F:COMPLETED"
    assert decode(b"run-1", raw) == Finished(RunStatus.COMPLETED)


def test_a_state_stored_as_plain_json_by_an_earlier_release_still_loads() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    assert decode(b"run-1", h.run.model_dump_json().encode()) == Live(h.run, None)


@pytest.mark.parametrize(
    "raw", [b"Z1:not zlib", b"W1:4:abcdefgh", b"W1:x:abcd", b"F:SLEEPING", b"{not json"]
)
def test_bytes_that_are_no_state_say_which_run(raw: bytes) -> None:
    with pytest.raises(StateCorrupt, match="run-9"):
        decode(b"run-9", raw)


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [200, 254, 600])
def test_a_state_with_a_deeply_nested_input_is_stored_and_loads_again(depth: int) -> None:
    # The command API takes an input nested 200 levels deep; pydantic alone wrote such a
    # state but could not read it back (its parser stops at 200 levels, its writer at 255).
    h = Harness(build_ir({"a": "noop"}, []), run_input=nested(depth))
    loaded = decode(b"run-1", encode(h.run, partition=1))
    assert loaded == Live(h.run, 1)


def test_a_state_too_deep_for_any_encoder_says_so() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    deep = h.run.model_copy(update={"input": nested(5_000)})
    with pytest.raises(StateUnstorable, match="run-1"):
        encode(deep, partition=0)


def test_a_state_stored_as_unstorable_does_not_load() -> None:
    with pytest.raises(StateCorrupt, match="could not be stored: too deep"):
        decode(b"run-9", encode_unstorable("too deep"))


def test_a_state_larger_than_a_changelog_record_may_be_says_so() -> None:
    noise = base64.b64encode(os.urandom(1_200_000)).decode()  # compresses to 1.2 MB at best
    h = Harness(build_ir({"a": "noop"}, []), run_input=noise)
    with pytest.raises(StateUnstorable, match="changelog"):
        encode(h.run, partition=0)
