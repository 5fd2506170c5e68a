"""The coordinator's stored states: compact while the run lives, a few bytes once it is over."""

from __future__ import annotations

import pytest

from processors.errors import StateCorrupt
from processors.stored import Finished, Live, decode, encode
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
