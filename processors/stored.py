"""How a run's state is kept in the coordinator's table (and so in its changelog).

The changelog is replayed whole when a coordinator starts (faust's memory store), so what is
written there decides how fast a restarted coordinator is back. Two things keep it small:

- a live run's state is zlib-compressed JSON (the inline IR and the event ids compress
  several times over), prefixed with the run's partition, which the timer index needs;
- a finished run is stored as ``F:<status>``: nothing more can happen to it, and the marker
  is enough to recognise its late or duplicated events (a RunSubmitted delivered twice must
  not start it again);
- a state rebuilt from the log that has no stored form is stored as ``U:<reason>``, which
  does not load: the run's next record fails the run.

States written as plain JSON by an earlier release still load.

A run's state holds values from outside (the run input, node outputs) however deeply they
nest. pydantic writes JSON 254 levels deep at most and reads it 199 levels deep at most, so
a run input nested 200 levels deep (which the command API takes) made a state that was
written but never loaded again. Both stay the fast path; when one gives up, the json
module (about 1,000 levels, as deep as any event it decoded) takes over. A state that even
that cannot write, or one larger than a changelog record may be, raises StateUnstorable,
for the coordinator to fail its run.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from processors.errors import StateCorrupt, StateUnstorable
from run_model import RunState, RunStatus
from schemas.events import MAX_EVENT_BYTES

# A state is a record of the table's changelog, sent by the same producer as events: it
# must fit as an event does (its inline outputs and input do not always compress).
MAX_STATE_BYTES = MAX_EVENT_BYTES
_FINISHED = b"F:"
_LIVE = b"Z"
_UNSTORABLE = b"U:"


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


def encode_unstorable(reason: str) -> bytes:
    """What is stored for a run whose state has no stored form, when there is no record at
    hand to fail it with: it does not load, so the run's next record fails it."""
    return _UNSTORABLE + reason.encode("utf-8", "replace")[:2000]


def stored_partition(raw: bytes) -> int | None:
    """The partition a live state was stored with, read without decoding the state."""
    head, found, _ = raw[len(_LIVE) :].partition(b":")
    return int(head) if raw.startswith(_LIVE) and found and head.isdigit() else None


def encode(state: RunState, partition: int) -> bytes:
    """The stored form of ``state``; StateUnstorable if it has none, or one larger than a
    record of the changelog may be."""
    if state.finished:
        return encode_finished(state.status)
    body = zlib.compress(_json(state), 1)
    raw = _LIVE + str(partition).encode() + b":" + body
    if len(raw) > MAX_STATE_BYTES:
        raise StateUnstorable(
            state.run_id,
            f"it takes {len(raw)} bytes compressed, and a record of the changelog may take "
            f"at most {MAX_STATE_BYTES}",
        )
    return raw


def decode(run_key: bytes, raw: bytes) -> Live | Finished:
    try:
        if raw.startswith(_FINISHED):
            return Finished(RunStatus(raw[len(_FINISHED) :].decode()))
        if raw.startswith(_UNSTORABLE):
            reason = raw[len(_UNSTORABLE) :].decode(errors="replace")
            raise ValueError(f"the state could not be stored: {reason}")
        if raw.startswith(_LIVE):
            head, _, body = raw[len(_LIVE) :].partition(b":")
            return Live(_state(zlib.decompress(body)), int(head))
        state = _state(raw)
    except (ValueError, ValidationError, zlib.error, RecursionError) as e:
        raise StateCorrupt(run_key.decode(errors="replace"), str(e)) from e
    return Finished(state.status) if state.finished else Live(state, None)


def _json(state: RunState) -> bytes:
    try:
        return state.model_dump_json().encode()
    except (ValueError, RecursionError):  # too deep for pydantic, or a lone surrogate
        pass
    try:
        return json.dumps(state.model_dump(), default=_plain).encode()
    except (ValueError, TypeError, RecursionError) as e:
        raise StateUnstorable(state.run_id, str(e)) from e


def _plain(value: Any) -> Any:
    """What the json module needs spelled out in a state dumped by pydantic's Python mode."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _state(body: bytes) -> RunState:
    try:
        return RunState.model_validate_json(body)
    except ValidationError as first:
        try:  # deeper than pydantic's parser goes? (anything else fails here again)
            return RunState.model_validate(json.loads(body))
        except (ValueError, ValidationError, RecursionError):
            raise first from None
