"""The coordinator's stored states: compact while the run lives, a few bytes once it is over."""

from __future__ import annotations

import base64
import os

import pytest

from processors.errors import StateCorrupt, StateUnstorable
from processors.stored import Finished, Live, decode, encode, encode_unstorable
from run_model import RunStatus
from run_model.testing import build_ir
from tests.unit.test_decider import Harness


def test_a_live_state_round_trips_with_its_partition_and_is_compressed() -> None:
    h = Harness(build_ir({f"n{i}": "noop" for i in range(30)}, []))
    raw = encode(h.run, partition=2)
    assert decode(b"run-1", raw) == Live(h.run, 2)
    assert len(raw) < len(h.run.model_dump_json()) / 3


def test_a_finished_run_is_kept_as_its_status_only() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    h.succeed("a")
    raw = encode(h.run, partition=0)
    assert raw == b"F:COMPLETED"
    assert decode(b"run-1", raw) == Finished(RunStatus.COMPLETED)


def test_a_state_stored_as_plain_json_by_an_earlier_release_still_loads() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    assert decode(b"run-1", h.run.model_dump_json().encode()) == Live(h.run, None)


@pytest.mark.parametrize("raw", [b"Z1:not zlib", b"F:SLEEPING", b"{not json"])
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
