"""How a run's state is kept in the coordinator's table (and so in its changelog).

The changelog is replayed whole when a coordinator starts (faust's memory store), so what is
written there decides how fast a restarted coordinator is back. Two things keep it small:

- a live run's state is zlib-compressed JSON (the event ids compress several times over),
  prefixed with the run's partition, which the timer index needs. It is written in two
  parts: its workflow (the compiled IR and the definition, the larger part) and the rest.
  Every run of a version has the same workflow part, byte for byte, so a process decodes it
  once and its states share it (``Workflows``): loading a state then parses only what is
  the run's own, writing one dumps only that, and dropping one frees only that. The IR is
  frozen, and nothing changes a definition in place (a patch makes a new one);
- a finished run is stored as ``F:<status>``: nothing more can happen to it, and the marker
  is enough to recognise its late or duplicated events (a RunSubmitted delivered twice must
  not start it again);
- a state rebuilt from the log that has no stored form is stored as ``U:<reason>``, which
  does not load: the run's next record fails the run.

States written by an earlier release (plain JSON, or one compressed part: ``Z``) still load.

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
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from processors.errors import StateCorrupt, StateUnstorable
from run_model import RunState, RunStatus
from schemas import WorkflowIR
from schemas.codec import json_value
from schemas.events import MAX_EVENT_BYTES

# A state is a record of the table's changelog, sent by the same producer as events: it
# must fit as an event does (its inline outputs and input do not always compress).
MAX_STATE_BYTES = MAX_EVENT_BYTES
_FINISHED = b"F:"
_LIVE = b"W"  # W<partition>:<length of the workflow part>:<workflow part><the rest>
_LIVE_WHOLE = b"Z"  # Z<partition>:<the whole state>, as an earlier release stored it
_UNSTORABLE = b"U:"
_WORKFLOW_FIELDS = {"ir", "definition"}
_M = TypeVar("_M", bound=RunState)


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
    if not raw.startswith((_LIVE, _LIVE_WHOLE)):
        return None
    head, found, _ = raw[1:].partition(b":")
    return int(head) if found and head.isdigit() else None


class Workflows:
    """The workflow parts of states (IR and definition) met lately, both ways: as written
    (by version: the IR and definition, and their bytes) and as read (bytes, to the IR and
    definition, shared by the states read). Up to ``size`` of each: a process runs a few
    versions at a time, not thousands."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._written: OrderedDict[str, tuple[WorkflowIR, dict[str, Any] | None, bytes]] = (
            OrderedDict()
        )
        self._read: OrderedDict[bytes, tuple[WorkflowIR, dict[str, Any] | None]] = OrderedDict()

    def written(self, state: RunState) -> bytes:
        """The stored bytes of ``state``'s workflow part."""
        ir, definition = state.ir, state.definition
        known = self._written.get(ir.version)
        # The same objects (a state read here, or written before), or equal ones (each
        # run's own, decoded from its run.submitted): the same bytes.
        if (
            known is not None
            and (known[0] is ir or known[0] == ir)
            and (known[1] is definition or known[1] == definition)
        ):
            self._written.move_to_end(ir.version)
            return known[2]
        part = {"ir": ir.model_dump(mode="json"), "definition": definition}
        raw = zlib.compress(_dumps(state.run_id, part), 1)
        self._remember(self._written, ir.version, (ir, definition, raw))
        self._remember(self._read, raw, (ir, definition))
        return raw

    def shared(self, state: _M) -> _M:
        """``state``, with the workflow (IR and definition) of its version that other states
        share, if equal: a run's own, decoded from its run.submitted, is compared once
        here, not each time the run is written (25 µs for a fanout10 IR)."""
        ir, definition = state.ir, state.definition
        known = self._written.get(ir.version)
        if known is None or (known[0] is ir and known[1] is definition):
            return state
        if known[0] == ir and known[1] == definition:
            return state.model_copy(update={"ir": known[0], "definition": known[1]})
        return state

    def read(self, raw: bytes) -> tuple[WorkflowIR, dict[str, Any] | None]:
        """The IR and definition stored as ``raw``."""
        known = self._read.get(raw)
        if known is not None:
            self._read.move_to_end(raw)
            return known
        part = json_value(zlib.decompress(raw))
        workflow = (WorkflowIR.model_validate(part["ir"]), part["definition"])
        self._remember(self._read, raw, workflow)
        return workflow

    def _remember(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.size:
            cache.popitem(last=False)


WORKFLOWS = Workflows()


def encode(state: RunState, partition: int) -> bytes:
    """The stored form of ``state``; StateUnstorable if it has none, or one larger than a
    record of the changelog may be."""
    if state.finished:
        return encode_finished(state.status)
    workflow = WORKFLOWS.written(state)
    rest = zlib.compress(_json(state), 1)
    raw = b"%s%d:%d:%s%s" % (_LIVE, partition, len(workflow), workflow, rest)
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
            head, _, rest = raw[len(_LIVE) :].partition(b":")
            length, _, parts = rest.partition(b":")
            split = int(length)
            ir, definition = WORKFLOWS.read(parts[:split])
            own = _run_part(zlib.decompress(parts[split:]))
            state = RunState.model_construct(  # the run's part is validated: no second pass
                own.model_fields_set | _WORKFLOW_FIELDS,
                **{**own.__dict__, "ir": ir, "definition": definition},
            )
            return Live(state, int(head))
        if raw.startswith(_LIVE_WHOLE):
            head, _, body = raw[len(_LIVE_WHOLE) :].partition(b":")
            return Live(_state(zlib.decompress(body)), int(head))
        state = _state(raw)
    except (ValueError, KeyError, TypeError, ValidationError, zlib.error, RecursionError) as e:
        raise StateCorrupt(run_key.decode(errors="replace"), str(e)) from e
    return Finished(state.status) if state.finished else Live(state, None)


def _json(state: RunState) -> bytes:
    """The state without its workflow part."""
    try:
        return state.model_dump_json(exclude=_WORKFLOW_FIELDS).encode()
    except (ValueError, RecursionError):  # too deep for pydantic, or a lone surrogate
        pass
    return _dumps(state.run_id, state.model_dump(exclude=_WORKFLOW_FIELDS))


def _dumps(run_id: str, value: Any) -> bytes:
    try:
        return json.dumps(value, default=_plain).encode()
    except (ValueError, TypeError, RecursionError) as e:
        raise StateUnstorable(run_id, str(e)) from e


class _RunPart(RunState):
    """A state's own part, read without its workflow (which the stored form keeps apart)."""

    ir: Any = None
    definition: Any = None


def _run_part(body: bytes) -> _RunPart:
    return _validated(_RunPart, body)


def _plain(value: Any) -> Any:
    """What the json module needs spelled out in a state dumped by pydantic's Python mode."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _state(body: bytes) -> RunState:
    return _validated(RunState, body)


def _validated(model: type[_M], body: bytes) -> _M:
    try:
        return model.model_validate_json(body)
    except ValidationError as first:
        try:  # deeper than pydantic's parser goes? (anything else fails here again)
            return model.model_validate(json.loads(body))
        except (ValueError, ValidationError, RecursionError):
            raise first from None
