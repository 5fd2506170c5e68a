"""How a run's state is kept in the coordinator's table (and so in its changelog).

The changelog is replayed whole when a coordinator starts (faust's memory store), so what is
written there decides how fast a restarted coordinator is back. Two things keep it small:

- a live run's state is zlib-compressed JSON (the inline IR and the event ids compress
  several times over), prefixed with the run's partition, which the timer index needs;
- a finished run is stored as ``F:<status>``: nothing more can happen to it, and the marker
  is enough to recognise its late or duplicated events (a RunSubmitted delivered twice must
  not start it again).

States written as plain JSON by an earlier release still load.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from pydantic import ValidationError

from processors.errors import StateCorrupt
from run_model import RunState, RunStatus

_FINISHED = b"F:"
_LIVE = b"Z"


@dataclass(frozen=True)
class Finished:
    """A run that is over: all that is kept of it."""

    status: RunStatus


@dataclass(frozen=True)
class Live:
    state: RunState
    partition: int | None  # None for a state stored by an earlier release


def encode_finished(status: RunStatus) -> bytes:
    return _FINISHED + status.value.encode()


def encode(state: RunState, partition: int) -> bytes:
    if state.finished:
        return encode_finished(state.status)
    body = zlib.compress(state.model_dump_json().encode(), 1)
    return _LIVE + str(partition).encode() + b":" + body


def decode(run_key: bytes, raw: bytes) -> Live | Finished:
    try:
        if raw.startswith(_FINISHED):
            return Finished(RunStatus(raw[len(_FINISHED) :].decode()))
        if raw.startswith(_LIVE):
            head, _, body = raw[len(_LIVE) :].partition(b":")
            return Live(RunState.model_validate_json(zlib.decompress(body)), int(head))
        state = RunState.model_validate_json(raw)
    except (ValueError, ValidationError, zlib.error) as e:
        raise StateCorrupt(run_key.decode(errors="replace"), str(e)) from e
    return Finished(state.status) if state.finished else Live(state, None)
