"""Bytes on Kafka ↔ models. JSON values, the run or workflow id as key, and the type and
schema version as headers too, so the log reads in Redpanda Console without AOB's code."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from schemas.envelope import Event, event_class, upcast
from schemas.errors import PoisonRecord, UnknownEventType
from schemas.tasks import TASK_WIRE_NAME, NodeTask

Headers = list[tuple[str, bytes]]

HEADER_TYPE = "aob-type"
HEADER_SCHEMA_VERSION = "aob-schema-version"
HEADER_EVENT_ID = "aob-event-id"


def encode_event(ev: Event) -> tuple[bytes, bytes, Headers]:
    """(key, value, headers) for producing ``ev``."""
    headers = [
        (HEADER_TYPE, ev.type.encode()),
        (HEADER_SCHEMA_VERSION, str(ev.schema_version).encode()),
        (HEADER_EVENT_ID, ev.event_id.encode()),
    ]
    return ev.aggregate_id.encode(), ev.model_dump_json().encode(), headers


def json_value(data: bytes) -> Any:
    """The JSON value in ``data``: pydantic's parser, twice as fast as the json module, and
    the json module for what the former does not take (nested deeper than about 200
    levels, a lone surrogate, a byte order mark), which also raises what neither takes."""
    try:
        return from_json(data)
    except ValueError:
        return json.loads(data)


def _loads(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise PoisonRecord("record has no value")
    try:
        raw = json_value(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PoisonRecord(f"value is not JSON: {e}") from e
    except RecursionError as e:  # JSON nested deeper than the parser goes
        raise PoisonRecord(f"value is JSON nested too deep to read: {e}") from e
    if not isinstance(raw, dict):
        raise PoisonRecord(f"value is JSON {type(raw).__name__}, not an object")
    return raw


def decode_event(value: bytes | None) -> Event:
    """The event in a record's value, upcast to its current version. PoisonRecord if none."""
    raw = _loads(value)
    try:
        raw = upcast(raw)
        return event_class(str(raw.get("type"))).model_validate(raw)
    except UnknownEventType as e:
        raise PoisonRecord(str(e)) from e
    except ValidationError as e:
        raise PoisonRecord(f"invalid {raw.get('type')} event: {e}") from e
    except (ValueError, TypeError, RecursionError) as e:  # an envelope an upcaster cannot read
        raise PoisonRecord(f"invalid {raw.get('type')} event: {e!r}") from e


def encode_task(task: NodeTask) -> tuple[bytes, bytes, Headers]:
    headers = [(HEADER_TYPE, TASK_WIRE_NAME.encode()), (HEADER_EVENT_ID, task.task_id.encode())]
    return task.run_id.encode(), task.model_dump_json().encode(), headers


def decode_task(value: bytes | None) -> NodeTask:
    raw = _loads(value)
    try:
        return NodeTask.model_validate(raw)
    except ValidationError as e:
        raise PoisonRecord(f"invalid task: {e}") from e
