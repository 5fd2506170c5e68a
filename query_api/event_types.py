"""A run's events as GraphQL gives them (``Run.events``, ``runEvents``), paged by seq."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from query_api.pagination import Keyset, PageInfo, Pages, int_key
from query_api.rows import from_row
from query_api.statuses import NodeStatus, RunStatus
from schemas.position import Position
from schemas.topics import RUN_EVENTS


@strawberry.type(
    description="One of a run's events, with what the read model made of it: the run's "
    "status after it, and the status of the node it is about."
)
class Event:
    id: strawberry.ID
    seq: int = strawberry.field(description="1, 2, … : the run's distinct events in log order.")
    position: str = strawberry.field(
        description="Where the log holds it (`topic:partition:offset`), as `--at` takes it."
    )
    type: str
    occurred_at: datetime
    causation_id: str | None
    actor: JSON
    payload: JSON
    run_status: RunStatus | None = strawberry.field(
        description="The run's status after this event (null if projected by an older release)."
    )
    node_id: str | None = strawberry.field(description="The node the event is about, if any.")
    node_status: NodeStatus | None = strawberry.field(
        description="That node's status after this event."
    )

    @staticmethod
    def of(r: Any) -> Event:
        """A ``run_events`` row."""
        return from_row(
            Event,
            r,
            id=r["event_id"],
            position=Position(RUN_EVENTS, r["kafka_partition"], r["kafka_offset"]).token(),
            run_status=RunStatus(r["run_status"]) if r["run_status"] else None,
            node_status=NodeStatus(r["node_status"]) if r["node_status"] else None,
        )


@strawberry.type
class EventEdge:
    cursor: str
    node: Event


@strawberry.type
class EventConnection:
    edges: list[EventEdge]
    page_info: PageInfo


# A run's events in log order. The cursor holds the seq: resume.py reads it back too, so
# ``Run.events`` and ``runEvents`` resume each other.
EVENT_PAGES = Pages(EventConnection, EventEdge, Event.of, Keyset((("seq", int_key),)))
