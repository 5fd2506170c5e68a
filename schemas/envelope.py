"""The envelope every event carries (DESIGN.md, Events), and the registry of wire names.

An event class names itself once with ``@event("run.node_succeeded", version=1)``; the
registry refuses a second class with the same name at import time, and decoding an unknown
name fails loudly. The Python class path never reaches the wire.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.errors import DuplicateEventType, UnknownEventType

# Namespace of deterministic event ids (uuid5): a decision replayed after a crash gets the
# id it had the first time, so every consumer can drop it as already seen.
AOB_NAMESPACE = uuid.UUID("6f1c7f0e-6a55-4f47-9d8e-2b7c5f0a9e11")


def deterministic_id(*parts: str) -> str:
    """An id that is a pure function of its parts, e.g. (causing event id, decision)."""
    return str(uuid.uuid5(AOB_NAMESPACE, "\x1f".join(parts)))


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Actor(BaseModel):
    """Who caused an event: a user (API key), an agent (node) or the system, in a tenant."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["user", "agent", "system"] = Field(description="What kind of actor.")
    id: str = Field(description="API key id, `run/node` of an agent, or a component name.")
    tenant: str = Field(description="The tenant the actor acts for.")


SYSTEM_TENANT = "system"


def system_actor(component: str, tenant: str = SYSTEM_TENANT) -> Actor:
    return Actor(kind="system", id=component, tenant=tenant)


class Payload(BaseModel):
    """Base of event payloads. Events read from the log tolerate unknown fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Event(BaseModel):
    """The envelope. Subclasses fix ``payload``'s model and register a wire name."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    wire_name: ClassVar[str] = ""
    wire_version: ClassVar[int] = 1

    event_id: str = Field(
        default_factory=new_id, description="Unique; deterministic for decisions."
    )
    type: str = Field("", description="Stable wire name, e.g. `run.node_succeeded`.")
    schema_version: int = Field(0, description="Version of this type's shape.")
    aggregate_id: str = Field(description="Workflow id or run id: the Kafka key.")
    occurred_at: datetime = Field(default_factory=utcnow, description="When it happened (UTC).")
    causation_id: str | None = Field(None, description="The event that caused this one.")
    correlation_id: str | None = Field(None, description="The run this event belongs to.")
    actor: Actor = Field(description="Who caused it.")
    payload: Payload

    @model_validator(mode="before")
    @classmethod
    def _fill_wire_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.wire_name:
            data = dict(data)
            data["type"] = data.get("type") or cls.wire_name
            if not data.get("schema_version"):
                data["schema_version"] = cls.wire_version
        return data

    @model_validator(mode="after")
    def _check_wire_name(self) -> Self:
        if self.wire_name and self.type != self.wire_name:
            raise ValueError(f"type {self.type!r} does not match {self.wire_name!r}")
        return self


EventT = TypeVar("EventT", bound=Event)

# Events of this family belong to a run: their aggregate is the run, and so is their
# correlation id. The others (``workflow.*``) belong to no run.
RUN_EVENT_PREFIX = "run."


def build_event(
    kind: type[EventT],
    payload: Payload,
    *,
    aggregate_id: str,
    actor: Actor,
    event_id: str | None = None,
    causation_id: str | None = None,
    occurred_at: datetime | None = None,
) -> EventT:
    """An event of ``kind`` with its envelope: the one place envelopes are assembled.

    The command API, the coordinator's decider, its timers, the workers and the test
    helpers all build events here, so the envelope's rules hold for every producer: the wire
    name and schema version come from the class, ``correlation_id`` is the run for run
    events (``run.*``), ``occurred_at`` is now unless the caller's clock says otherwise, and
    the id is fresh unless the caller derives one (a decision from its cause,
    ``run_model.decisions.decided``; a report from its task, ``schemas.reports``; a command
    from its Idempotency-Key). It lives with the envelope, in the wire contract, because
    every producer depends on ``schemas`` and ``schemas`` on none of them.
    """
    return kind(
        event_id=event_id or new_id(),
        aggregate_id=aggregate_id,
        occurred_at=occurred_at or utcnow(),
        causation_id=causation_id,
        correlation_id=aggregate_id if kind.wire_name.startswith(RUN_EVENT_PREFIX) else None,
        actor=actor,
        payload=payload,
    )


E = TypeVar("E", bound=type[Event])

_REGISTRY: dict[str, type[Event]] = {}
# (wire name, from version) -> function that lifts a raw dict one version up.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def event(wire_name: str, version: int = 1) -> Callable[[E], E]:
    """Register an event class under a stable wire name."""

    def register(cls: E) -> E:
        if wire_name in _REGISTRY:
            raise DuplicateEventType(
                f"{wire_name!r} is claimed by {_REGISTRY[wire_name].__name__} and {cls.__name__}"
            )
        cls.wire_name = wire_name
        cls.wire_version = version
        _REGISTRY[wire_name] = cls
        return cls

    return register


def upcaster(wire_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function lifting a raw event dict from ``from_version`` to the next."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(wire_name, from_version)] = fn
        return fn

    return register


def event_class(wire_name: str) -> type[Event]:
    try:
        return _REGISTRY[wire_name]
    except KeyError:
        raise UnknownEventType(wire_name) from None


def registered_events() -> dict[str, type[Event]]:
    return dict(_REGISTRY)


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """Lift a raw event dict to its type's current version, one upcaster at a time."""
    cls = event_class(str(raw.get("type")))
    version = int(raw.get("schema_version") or 1)
    while version < cls.wire_version:
        step = _UPCASTERS.get((cls.wire_name, version))
        if step is None:
            raise UnknownEventType(f"{cls.wire_name} v{version} (no upcaster)")
        raw = step(raw)
        version += 1
        raw["schema_version"] = version
    return raw
