"""The coordinator's outbox: records checked before they go out, and the broker's answers.

Every record is encoded and measured as it is put in (``event_record``, ``task_record``).
One that does not encode (a lone surrogate, nesting deeper than the encoder goes) or that
the broker would refuse (a value over ``MAX_EVENT_BYTES`` / ``MAX_TASK_BYTES``, or a record
over the producer's request limit, measured as the producer measures it but a little
larger) raises Unsendable: the coordinator fails the run instead of sending it.

``send_all`` sends the outbox and awaits every acknowledgement at once. A fault of the
connection (the broker unreachable, a timeout, a producer that stopped) raises, as it always
did: nothing of the batch is stored and faust delivers the batch again. The broker refusing
one record is different: it refuses the same record on every retry, so holding the batch
would stop the partition for good. aiokafka fails that record's acknowledgement with
``MessageSizeTooLargeError`` (or ``RecordListTooLargeError``), which are not retriable;
such refusals are returned, with the record each came from, for the coordinator to fail
those runs. The checks above make them rare (a topic configured below Kafka's defaults).

A refusal raised by ``send`` itself rather than by the acknowledgement is not taken as the
record's own: the producer's own size check cannot refuse a record that passed the checks
here, and aiokafka raises the refusal of the batch ahead of a record (one waiting for room
behind it) from that record's ``send``. Such a record is returned as caught up
(``own=False``), and sent again when the batch is handled again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

from processors.errors import Unsendable
from schemas.codec import encode_event, encode_task
from schemas.envelope import Event
from schemas.events import MAX_EVENT_BYTES
from schemas.tasks import MAX_TASK_BYTES, NodeTask

Where = tuple[int, int]  # (partition, offset) of a record of the run topic
Headers = list[tuple[str, bytes]]

# A record's framing besides its key, value and headers: aiokafka counts a batch header (61
# bytes) and at most 21 bytes of record overhead, and a few bytes per header; this is more.
RECORD_OVERHEAD = 128
HEADER_OVERHEAD = 10
# The broker's refusals of one record, which no retry changes.
REFUSALS = (MessageSizeTooLargeError, RecordListTooLargeError)
DLQ_REASON_MAX_BYTES = 4_000


@dataclass(frozen=True)
class Outgoing:
    """A record to send, and the record of the run topic whose decision it is (``cause``):
    None for what the coordinator sends when a run fails, which fails nothing more."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None  # None: the producer's partitioner
    headers: Headers
    cause: Where | None = None


@dataclass(frozen=True)
class Refusal:
    """A record the broker refused; ``own`` if its acknowledgement says so (see the module
    doc), not if it was only caught up in the refusal of the record ahead of it."""

    outgoing: Outgoing
    error: BaseException
    own: bool


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """An upper bound of the size the producer gives the record."""
    framing = RECORD_OVERHEAD + sum(HEADER_OVERHEAD + len(k) + len(v) for k, v in headers)
    return framing + len(key or b"") + len(value or b"")


def event_record(
    ev: Event, topic: str, partition: int | None, cause: Where | None, record_limit: int
) -> Outgoing:
    """``ev`` as a record for ``partition`` of ``topic`` (None: the producer's partitioner,
    by the event's key); Unsendable if the broker would refuse it or it does not encode."""
    try:
        key, value, headers = encode_event(ev)
    except Exception as e:  # encoding is pure: whatever it raises, this event has no bytes
        raise Unsendable(f"{ev.type} {ev.event_id} cannot be encoded: {e!r}") from e
    _check(f"{ev.type} {ev.event_id}", (key, value, headers), MAX_EVENT_BYTES, record_limit)
    return Outgoing(topic, key, value, partition, headers, cause)


def task_record(task: NodeTask, topic: str, cause: Where | None, record_limit: int) -> Outgoing:
    """``task`` as a record of ``topic``; Unsendable as for events (a task carries the run
    input and the inline outputs of every node finished before it)."""
    what = f"the task of node {task.node_id!r} (attempt {task.attempt})"
    try:
        key, value, headers = encode_task(task)
    except Exception as e:  # as for events
        raise Unsendable(f"{what} cannot be encoded: {e!r}") from e
    _check(what, (key, value, headers), MAX_TASK_BYTES, record_limit)
    return Outgoing(topic, key, value, None, headers, cause)


def _check(
    what: str, record: tuple[bytes, bytes, Headers], value_limit: int, record_limit: int
) -> None:
    key, value, headers = record
    if len(value) > value_limit:
        raise Unsendable(
            f"{what} would take {len(value)} bytes, and the most one may take is {value_limit}"
        )
    size = record_size(key, value, headers)
    if size > record_limit:
        raise Unsendable(
            f"{what} would make a record of {size} bytes, and the producer sends at most "
            f"{record_limit}"
        )


def dead_letter(
    topic: str,
    record: tuple[bytes | None, bytes | None],
    reason: str,
    source: str,
    record_limit: int,
) -> Outgoing:
    """The record at ``source`` parked in ``topic`` with ``reason``. A record the log took
    may still be too large with the reason beside it: then its value (and key) stay only in
    the log, where the source header says to read them."""
    key, value = record
    headers: Headers = [
        ("aob-dlq-reason", reason.encode("utf-8", "replace")[:DLQ_REASON_MAX_BYTES]),
        ("aob-dlq-source", source.encode()),
    ]
    if record_size(key, value, headers) > record_limit:
        omitted = f"{len(key or b'')} key and {len(value or b'')} value bytes: read them there"
        headers.append(("aob-dlq-omitted", omitted.encode()))
        key, value = None, None
    if key is None and value is None:
        value = b""  # a producer sends a record with a key or a value
    return Outgoing(topic, key, value, None, headers)


def broker_refusal(error: BaseException) -> BaseException | None:
    """The broker's refusal of a record in ``error`` or what caused it (faust wraps what
    aiokafka raises in ProducerSendError), or None for any other fault."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, REFUSALS):
            refusal: BaseException = current
            return refusal
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


async def send_all(producer: Any, outbox: list[Outgoing]) -> list[Refusal]:
    """Send ``outbox`` in order and await every acknowledgement; the records the broker
    refused. Any other fault raises (once every acknowledgement is in)."""
    refused: list[Refusal] = []
    pending: list[tuple[Outgoing, Any]] = []
    for out in outbox:
        try:
            ack = await producer.send(
                out.topic, out.key, out.value, out.partition, None, out.headers
            )
        except Exception as e:
            if broker_refusal(e) is None:
                raise
            refused.append(Refusal(out, e, own=False))
            continue
        pending.append((out, ack))
    answers = await asyncio.gather(*(ack for _, ack in pending), return_exceptions=True)
    fault: BaseException | None = None
    for (out, _), answer in zip(pending, answers, strict=True):
        if not isinstance(answer, BaseException):
            continue
        if broker_refusal(answer) is None:
            fault = fault or answer
        else:
            refused.append(Refusal(out, answer, own=True))
    if fault is not None:
        raise fault
    return refused
