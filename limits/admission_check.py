"""Admission: whether a command may go ahead under its limits, decided in PostgreSQL in one
statement, exactly, for every command API process at once.

A limit is "at most N per sliding minute" for one key (a tenant's tier, a tenant's
submissions, the deployment's submissions, a tenant's forks...). A command names every limit
it counts against; it is admitted only if each has room, and then counted in every one;
refused, it counts in none (all or nothing). ``aob_admit_up_to`` checks up to N commands with
the same limits at once: it admits as many as every key has room for.

Exact, across processes: in any 60 s window, no key admits more than its limit, however many
callers race. How ``aob_admit_up_to`` (created with the tables, below) gets there:

- **A log per key.** ``admission_times`` holds one row per admission and key, for the last
  minute; ``admission_windows`` one row per key, counting them (``in_window``). A sliding
  log, not a token bucket: a bucket refills during a burst, so it admits more than N in some
  minute; the log admits the (N+1)th only once the oldest of N has left the window.
- **A lock per key.** Each check locks its keys' ``admission_windows`` rows (``FOR UPDATE``)
  before it reads anything, and keeps them until it commits: the checks of one key run one
  after another, in whichever process; a plain ``SELECT count(*)`` then ``INSERT`` would let
  two callers both see room for one. Keys are locked in sorted order, so that two checks
  with overlapping keys never wait for each other in a cycle; a key's row is made by its
  first check (``ON CONFLICT DO NOTHING``, also in order).
- **Time read under the lock.** Each statement of a VOLATILE plpgsql function sees what
  committed before it began, in READ COMMITTED: after the locks, the function reads the
  rows as the last holder left them, and reads the clock (``clock_timestamp()``, not
  ``now()``, the time the transaction began): a key's admissions are recorded in the order
  they were decided, which is what makes "the last N" the right N to look at.
- **Pruned as it goes.** Admissions older than the window are deleted by the next check of
  their key, so a key keeps at most its limit's worth of rows.

A refusal names the key whose wait is longest (all must have room), and that wait: until the
admission whose leaving makes room has left the window.

An admitted command whose append then fails (Kafka down, a 503) stays counted: the caller's
retry counts again. Rare, and on the safe side of the limit. A command replayed from its
``Idempotency-Key`` is not checked again (``command_api.idempotency`` runs it once).

The cost: one round trip, one short transaction for each batch of commands with the same
limits (``Admissions`` gathers them); per key, an index probe and a few row writes (a row per
admission, one counter, the pruned rows). Measured on PostgreSQL alone, 16 callers of one
tenant's keys at once: one command a statement cost 0.67 ms of PostgreSQL's CPU per command,
its lock waits included, and admitted at most about 1,700 a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from infra.coalesce import MOST_AT_ONCE, Coalesced
from limits.admission import AdmissionLimits, Tier

WINDOW_S = 60.0

Action = Literal["forks", "patches", "approvals"]
ACTIONS: tuple[Action, ...] = ("forks", "patches", "approvals")

DDL = """
SELECT pg_advisory_xact_lock(hashtext('aob.admission.schema'));
CREATE TABLE IF NOT EXISTS admission_windows (
    key        text PRIMARY KEY,
    in_window  integer NOT NULL DEFAULT 0 CHECK (in_window >= 0)
);
CREATE TABLE IF NOT EXISTS admission_times (
    key  text NOT NULL,
    at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS admission_times_by_key ON admission_times (key, at);
CREATE OR REPLACE FUNCTION aob_admit_up_to(
    p_keys text[],
    p_limits integer[],
    p_window_s double precision,
    p_wanted integer,
    OUT admitted integer,
    OUT refused_key text,
    OUT retry_after_s double precision
) LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    t        timestamptz;
    cutoff   timestamptz;
    live     integer[];
    n        integer;
    expired  integer;
    oldest   timestamptz;
    wait_s   double precision;
BEGIN
    IF cardinality(p_keys) IS DISTINCT FROM cardinality(p_limits)
       OR cardinality(p_keys) <> (SELECT count(DISTINCT k) FROM unnest(p_keys) AS k)
       OR p_wanted IS NULL OR p_wanted < 1 THEN
        RAISE EXCEPTION 'aob_admit_up_to: give distinct keys, one limit each, wanted >= 1';
    END IF;
    INSERT INTO admission_windows (key)
    SELECT k FROM unnest(p_keys) AS k ORDER BY k
    ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM admission_windows w WHERE w.key = ANY (p_keys) ORDER BY w.key FOR UPDATE;
    t := clock_timestamp();
    cutoff := t - make_interval(secs => p_window_s);
    admitted := p_wanted;
    retry_after_s := 0;
    live := '{}';
    FOR i IN 1 .. cardinality(p_keys) LOOP
        SELECT w.in_window INTO n FROM admission_windows w WHERE w.key = p_keys[i];
        DELETE FROM admission_times a WHERE a.key = p_keys[i] AND a.at <= cutoff;
        GET DIAGNOSTICS expired = ROW_COUNT;
        IF expired > 0 THEN
            n := n - expired;
            UPDATE admission_windows w SET in_window = n WHERE w.key = p_keys[i];
        END IF;
        live := live || n;
        admitted := least(admitted, greatest(p_limits[i] - n, 0));
    END LOOP;
    IF admitted > 0 THEN
        INSERT INTO admission_times (key, at)
        SELECT k, t FROM unnest(p_keys) AS k, generate_series(1, admitted);
        UPDATE admission_windows w SET in_window = w.in_window + admitted
         WHERE w.key = ANY (p_keys);
    END IF;
    IF admitted < p_wanted THEN
        -- The next command waits for room in each key that is full now.
        FOR i IN 1 .. cardinality(p_keys) LOOP
            CONTINUE WHEN live[i] + admitted < p_limits[i];
            IF p_limits[i] <= 0 THEN
                wait_s := p_window_s;
            ELSE
                -- Room comes when the admission (live + admitted - limit) places from the
                -- oldest leaves: one admitted now leaves a whole window from now.
                SELECT a.at INTO oldest FROM admission_times a
                 WHERE a.key = p_keys[i] ORDER BY a.at
                 OFFSET live[i] + admitted - p_limits[i] LIMIT 1;
                wait_s := coalesce(extract(epoch FROM oldest - cutoff), p_window_s);
            END IF;
            IF refused_key IS NULL OR wait_s > retry_after_s THEN
                refused_key := p_keys[i];
                retry_after_s := wait_s;
            END IF;
        END LOOP;
    END IF;
END
$fn$;
"""

ADMIT = (
    "SELECT admitted, refused_key, retry_after_s FROM aob_admit_up_to("
    "$1::text[], $2::integer[], $3::double precision, $4::integer)"
)


@dataclass(frozen=True)
class Limit:
    """One limit a command counts against.

    ``name`` is what a refusal calls it (``tier:agentic``, ``submissions``, ``global``,
    ``forks``...), ``key`` the row it is counted in (unique across tenants), ``says`` how a
    person reads it (``tenant acme: tier agentic allows 20 submissions a minute``).
    """

    name: str
    key: str
    per_minute: int
    says: str


@dataclass(frozen=True)
class Refusal:
    """A command refused by ``limit``; room comes in ``retry_after_s`` (whole seconds, at
    least 1: what ``Retry-After`` carries)."""

    limit: Limit
    retry_after_s: int

    @property
    def detail(self) -> str:
        return f"{self.limit.says}; retry in {self.retry_after_s} s"

    def as_json(self) -> dict[str, Any]:
        """The ``limit`` member of a 429's problem body."""
        return {
            "name": self.limit.name,
            "per_minute": self.limit.per_minute,
            "retry_after_s": self.retry_after_s,
        }


def whole_seconds(seconds: float) -> int:
    """A wait as ``Retry-After`` says it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds))


def submission_limits(
    tenant: str, limits: AdmissionLimits, tier: Tier, global_per_minute: int | None
) -> list[Limit]:
    """What a run submitted by ``tenant`` at ``tier`` counts against: the tier, the tenant's
    submissions, and the deployment's (when an operator set ``global_per_minute``)."""
    found = [
        Limit(
            f"tier:{tier.name}",
            f"tenant:{tenant}:tier:{tier.name}",
            tier.per_minute,
            f"tenant {tenant}: tier {tier.name} allows {tier.per_minute} submissions a minute",
        ),
        Limit(
            "submissions",
            f"tenant:{tenant}:submissions",
            limits.submissions_per_minute,
            f"tenant {tenant}: its limit allows {limits.submissions_per_minute} submissions "
            "a minute, of all tiers",
        ),
    ]
    if global_per_minute is not None:
        found.append(
            Limit(
                "global",
                "global:submissions",
                global_per_minute,
                f"the deployment allows {global_per_minute} submissions a minute, of all tenants",
            )
        )
    return found


def action_limits(tenant: str, limits: AdmissionLimits, action: Action) -> list[Limit]:
    """What a person's fork, patch or approval counts against: the tenant's limit for it."""
    per_minute: int = getattr(limits, f"{action}_per_minute")
    return [
        Limit(
            action,
            f"tenant:{tenant}:{action}",
            per_minute,
            f"tenant {tenant}: its limit allows {per_minute} {action} a minute",
        )
    ]


_Group = tuple[Limit, ...]  # commands that count against the same limits


class Executor(Protocol):
    """What we need of an asyncpg pool or connection."""

    async def execute(self, query: str, *args: object) -> str: ...
    async def fetchrow(self, query: str, *args: object) -> Any: ...


async def ensure_schema(db: Executor) -> None:
    """The tables and ``aob_admit_up_to``, made or replaced; safe to run from every process at
    once (an advisory lock serialises the DDL)."""
    await db.execute(DDL)


class Admissions:
    """Admits commands against their limits in PostgreSQL (``aob_admit_up_to``).

    The checks of one key run one after another in PostgreSQL (its rows are locked until the
    check commits), so a burst of one tenant's commands would queue there, each holding the
    lock for a round trip and a commit. Here they queue in the process instead: commands with
    the same limits that arrive while a check of those limits is under way are admitted
    together by the next, one statement for all of them (at most ``most_at_once``), in the
    order they came (``infra.coalesce``). Exactness is the statement's, as for one: it admits
    as many as every key has room for, the first ones, and refuses the rest.
    """

    def __init__(self, db: Executor, *, most_at_once: int = MOST_AT_ONCE) -> None:
        self._db = db
        self._checks: Coalesced[_Group, None, Refusal | None] = Coalesced(
            self._check, most_at_once=most_at_once
        )

    async def admit(self, limits: Sequence[Limit]) -> Refusal | None:
        """None if the command may go ahead (it is then counted in every limit), else the
        refusal of the limit that holds it back longest (it is then counted in none)."""
        if not limits:
            return None
        keys = tuple(limit.key for limit in limits)
        if len(set(keys)) != len(keys):
            raise ValueError(f"a command counts once per limit; given the keys {list(keys)}")
        closed = next((limit for limit in limits if limit.per_minute <= 0), None)
        if closed is not None:  # room never comes: no round trip
            return Refusal(closed, whole_seconds(WINDOW_S))
        return await self._checks(tuple(limits), None)

    async def _check(self, group: _Group, commands: list[None]) -> list[Refusal | None]:
        """The answer to each of ``commands``, which count against ``group``, in order."""
        admitted, refusal = await self._admit_up_to(group, len(commands))
        return [None if i < admitted else refusal for i in range(len(commands))]

    async def _admit_up_to(self, limits: _Group, wanted: int) -> tuple[int, Refusal | None]:
        row = await self._db.fetchrow(
            ADMIT,
            [limit.key for limit in limits],
            [limit.per_minute for limit in limits],
            WINDOW_S,
            wanted,
        )
        admitted: int = row["admitted"]
        if admitted >= wanted:
            return admitted, None
        by_key = {limit.key: limit for limit in limits}
        return admitted, Refusal(by_key[row["refused_key"]], whole_seconds(row["retry_after_s"]))
