"""The ``Subscription`` root: ``runUpdated`` and ``runEvents`` (the loops are in live.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractContextManager, aclosing, nullcontext

import strawberry
from strawberry.types import Info

from query_api import live
from query_api.context import ReadContext
from query_api.event_types import EVENT_PAGES, EventEdge
from query_api.run_types import Run


def _slot(context: ReadContext) -> AbstractContextManager[None]:
    """One of the tenant's subscription slots, held while the subscription runs."""
    counted = context.subscriptions
    return counted.slot(context.tenant) if counted is not None else nullcontext()


@strawberry.type
class Subscription:
    """Over WebSocket (graphql-transport-ws). The API key is checked again before every
    message; a run of another tenant is an error, never data."""

    @strawberry.subscription(
        description="The run as it is now, then again each time it changes; completes after "
        "sending it in a terminal status (COMPLETED, FAILED, CANCELLED)."
    )
    async def run_updated(
        self, info: Info[ReadContext, None], id: strawberry.ID
    ) -> AsyncGenerator[Run, None]:
        with _slot(info.context):
            async with aclosing(live.run_updates(info.context, str(id))) as rows:
                async for row in rows:
                    yield Run.of(row)

    @strawberry.subscription(
        description="The run's events in log order, then each new one as it is projected; "
        "completes after the run's terminal event. `after` resumes: an event cursor (as "
        "`Run.events` and this subscription issue them) or a position "
        "(`topic:partition:offset`, as the command API answers)."
    )
    async def run_events(
        self, info: Info[ReadContext, None], id: strawberry.ID, after: str | None = None
    ) -> AsyncGenerator[EventEdge, None]:
        with _slot(info.context):
            async with aclosing(live.run_events(info.context, str(id), after)) as rows:
                async for row in rows:
                    yield EVENT_PAGES.edge(row)
