"""``wait_event``: wait for an outside event. The name and the key are rendered, the run is
told (``run.event_awaited``) and, once that is acknowledged, the wait is written where the
command API finds it (``triggers.event_waits``); the node then WAITS, outside any worker,
until ``POST /v1/events`` brings an event with that name and key (its ``received`` edge, the
event's data as its output) or the node's ``timeout_s`` passes (its ``timeout`` edge).

Config: ``name`` and ``key`` (templates: ``"{{ input.order }}"``). The key is text: a
number renders as its digits, and is posted as that string.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from schemas import reports
from schemas.envelope import utcnow
from schemas.events import EventAwaited, EventAwaitedPayload
from templating import renders
from triggers import event_waits
from workers.errors import ConfigError
from workers.handlers.base import WAITING, Job

MAX_KEY_CHARS = 500


class WaitEvent:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def __call__(self, job: Job) -> Any:
        rendered = {}
        for field in ("name", "key"):
            template = job.config.get(field)
            if not isinstance(template, str) or not template.strip():
                raise ConfigError(f"wait_event config needs '{field}', a non-empty string")
            text = (await renders.render_string(template, job.template_context)).strip()
            if not text or len(text) > MAX_KEY_CHARS:
                raise ConfigError(
                    f"wait_event '{field}' rendered to {len(text)} characters; it must have "
                    f"1 to {MAX_KEY_CHARS}"
                )
            rendered[field] = text
        task = job.task
        now = utcnow()
        limit = task.timeout_s
        due = now + timedelta(seconds=limit) if limit else None
        payload = EventAwaitedPayload(
            node_id=task.node_id,
            attempt=task.attempt,
            name=rendered["name"],
            key=rendered["key"],
            timeout_s=limit,
            due_at=due,
        )
        await job.emit(reports.report(EventAwaited, task, payload, "event_awaited", at=now))
        waiter = event_waits.Waiter(task.run_id, task.node_id, task.attempt, due)
        await event_waits.record(self.pool, task.tenant, rendered["name"], rendered["key"], waiter)
        return WAITING


async def open_wait_event(dsn: str) -> tuple[WaitEvent, asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    await event_waits.ensure_schema(pool)
    return WaitEvent(pool), pool
