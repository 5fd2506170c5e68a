"""Admission (``limits.admission_check``) without a server: which limits a command counts
against and under which keys, what a refusal says, what is sent to PostgreSQL, and the shape
of ``aob_admit`` read with PostgreSQL's own parser (libpg_query, through pglast): the order of
its steps is what makes it exact (rows made, then locked in key order, then the clock read,
then counted; written only if every key has room). That it admits exactly its limits under
concurrent callers is the connected lane's to show."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pglast
import pytest
from pglast import ast, enums
from pglast.parser import parse_plpgsql_json
from pglast.stream import RawStream

from limits.admission import AdmissionLimits, Tier
from limits.admission_check import (
    ADMIT,
    DDL,
    WINDOW_S,
    Admissions,
    Limit,
    Refusal,
    action_limits,
    submission_limits,
    whole_seconds,
)

AGENTIC = Tier(name="agentic", max_agent_nodes=2, per_minute=20)
DEFAULTS = AdmissionLimits()


# --- which limits, under which keys ------------------------------------------------------------


def test_a_submission_counts_in_its_tier_and_the_tenants_and_the_global_when_set() -> None:
    limits = submission_limits("acme", DEFAULTS, AGENTIC, None)
    assert [(lim.name, lim.key, lim.per_minute) for lim in limits] == [
        ("tier:agentic", "tenant:acme:tier:agentic", 20),
        ("submissions", "tenant:acme:submissions", 300),
    ]
    assert limits[0].says == "tenant acme: tier agentic allows 20 submissions a minute"
    with_global = submission_limits("acme", DEFAULTS, AGENTIC, 1000)
    assert with_global[:2] == limits
    assert (with_global[2].name, with_global[2].key, with_global[2].per_minute) == (
        "global",
        "global:submissions",
        1000,
    )


def test_keys_are_the_tenants_own_and_the_global_key_is_everyones() -> None:
    ours = {lim.key for lim in submission_limits("acme", DEFAULTS, AGENTIC, 10)}
    theirs = {lim.key for lim in submission_limits("umbrella", DEFAULTS, AGENTIC, 10)}
    assert ours & theirs == {"global:submissions"}


@pytest.mark.parametrize(("action", "per_minute"), [("forks", 60), ("patches", 120)])
def test_forks_patches_and_approvals_have_a_limit_each(action: Any, per_minute: int) -> None:
    (limit,) = action_limits("acme", DEFAULTS, action)
    assert (limit.name, limit.key, limit.per_minute) == (
        action,
        f"tenant:acme:{action}",
        per_minute,
    )
    assert limit.says == f"tenant acme: its limit allows {per_minute} {action} a minute"
    (approvals,) = action_limits(
        "acme", DEFAULTS.model_copy(update={"approvals_per_minute": 7}), "approvals"
    )
    assert approvals.per_minute == 7


# --- what a refusal says ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "whole"), [(0.0, 1), (0.2, 1), (1.0, 1), (2.01, 3), (59.9, 60)]
)
def test_waits_are_whole_seconds_rounded_up_and_at_least_one(seconds: float, whole: int) -> None:
    assert whole_seconds(seconds) == whole


def test_a_refusal_names_its_limit_its_numbers_and_the_wait() -> None:
    refusal = Refusal(submission_limits("acme", DEFAULTS, AGENTIC, None)[0], 3)
    assert (
        refusal.detail == "tenant acme: tier agentic allows 20 submissions a minute; retry in 3 s"
    )
    assert refusal.as_json() == {"name": "tier:agentic", "per_minute": 20, "retry_after_s": 3}


# --- what is sent to PostgreSQL -----------------------------------------------------------------


class Db:
    """Answers ``aob_admit_up_to`` with ``row`` (or what ``answer`` makes of the number
    wanted), and records what it was asked. With ``gate``, each statement waits for it."""

    def __init__(
        self,
        row: dict[str, Any] | None = None,
        *,
        answer: Any = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.row = row
        self.answer = answer
        self.gate = gate
        self.asked: list[tuple[Any, ...]] = []

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        self.asked.append((query, *args))
        if self.gate is not None:
            await self.gate.wait()
        if self.answer is not None:
            return self.answer(args[-1])  # type: ignore[no-any-return]
        assert self.row is not None
        return self.row

    async def execute(self, query: str, *args: Any) -> str:
        raise AssertionError("admission is one fetchrow")


LIMITS = submission_limits("acme", DEFAULTS, AGENTIC, 1000)
ADMITTED = {"admitted": 1, "refused_key": None, "retry_after_s": 0.0}


def room_for(room: int) -> Any:
    """An answer admitting up to ``room`` commands over the whole test, refusing the rest by
    the tenant's submissions limit."""
    left = [room]

    def answer(wanted: int) -> dict[str, Any]:
        admitted = min(wanted, left[0])
        left[0] -= admitted
        refused = admitted < wanted
        return {
            "admitted": admitted,
            "refused_key": "tenant:acme:submissions" if refused else None,
            "retry_after_s": 2.2 if refused else 0.0,
        }

    return answer


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_statement_with_every_key_and_limit() -> None:
    db = Db(ADMITTED)
    assert await Admissions(db).admit(LIMITS) is None
    assert db.asked == [
        (
            ADMIT,
            ["tenant:acme:tier:agentic", "tenant:acme:submissions", "global:submissions"],
            [20, 300, 1000],
            WINDOW_S,
            1,
        )
    ]


async def test_the_refused_key_becomes_its_limits_refusal() -> None:
    db = Db({"admitted": 0, "refused_key": "tenant:acme:submissions", "retry_after_s": 2.2})
    refusal = await Admissions(db).admit(LIMITS)
    assert refusal == Refusal(LIMITS[1], 3)


async def test_a_limit_of_zero_refuses_without_a_round_trip() -> None:
    db = Db({})
    closed = submission_limits("acme", DEFAULTS, AGENTIC.model_copy(update={"per_minute": 0}), None)
    refusal = await Admissions(db).admit(closed)
    assert refusal == Refusal(closed[0], 60)
    assert db.asked == []


async def test_nothing_to_count_is_admitted_and_a_key_twice_is_a_bug() -> None:
    assert await Admissions(Db({})).admit([]) is None
    twice = [Limit("a", "k", 1, "a"), Limit("b", "k", 2, "b")]
    with pytest.raises(ValueError, match="once per limit"):
        await Admissions(Db({})).admit(twice)


# --- commands that arrive together ---------------------------------------------------------------


async def test_commands_arriving_during_a_check_are_admitted_by_the_next_in_order() -> None:
    gate = asyncio.Event()
    db = Db(answer=room_for(4), gate=gate)
    admissions = Admissions(db)
    first = asyncio.create_task(admissions.admit(LIMITS))
    await settle()
    rest = [asyncio.create_task(admissions.admit(LIMITS)) for _ in range(5)]
    await settle()
    assert [asked[-1] for asked in db.asked] == [1]  # the five wait for the first's check
    gate.set()
    answers = [await first, *[await t for t in rest]]
    assert [asked[-1] for asked in db.asked] == [1, 5]  # then one statement for the five
    # Room for four: the first and the three that came next; the last two are refused.
    assert answers == [None, None, None, None, Refusal(LIMITS[1], 3), Refusal(LIMITS[1], 3)]


async def test_a_batch_is_at_most_so_many_commands() -> None:
    gate = asyncio.Event()
    db = Db(answer=room_for(100), gate=gate)
    admissions = Admissions(db, most_at_once=3)
    tasks = [asyncio.create_task(admissions.admit(LIMITS)) for _ in range(8)]
    await settle()
    gate.set()
    assert await asyncio.gather(*tasks) == [None] * 8
    # All eight queued before the first check began.
    assert [asked[-1] for asked in db.asked] == [3, 3, 2]


async def test_commands_with_other_limits_are_checked_apart_and_at_once() -> None:
    gate = asyncio.Event()
    db = Db(ADMITTED, gate=gate)
    admissions = Admissions(db)
    other = submission_limits("umbrella", DEFAULTS, AGENTIC, None)
    tasks = [asyncio.create_task(admissions.admit(lim)) for lim in (LIMITS, other)]
    await settle()
    assert [asked[1][0] for asked in db.asked] == [
        "tenant:acme:tier:agentic",
        "tenant:umbrella:tier:agentic",
    ]
    gate.set()
    assert await asyncio.gather(*tasks) == [None, None]


async def test_a_caller_gone_before_its_check_is_not_counted() -> None:
    gate = asyncio.Event()
    db = Db(answer=room_for(10), gate=gate)
    admissions = Admissions(db)
    first = asyncio.create_task(admissions.admit(LIMITS))
    await settle()
    gone, kept = (asyncio.create_task(admissions.admit(LIMITS)) for _ in range(2))
    await settle()
    gone.cancel()
    gate.set()
    assert (await first, await kept) == (None, None)
    assert gone.cancelled()
    assert [asked[-1] for asked in db.asked] == [1, 1]


async def test_a_failed_check_fails_its_batch_and_the_next_batch_is_checked() -> None:
    gate = asyncio.Event()
    calls = [0]

    def answer(wanted: int) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 2:
            raise ConnectionError("the database went away")
        return {"admitted": wanted, "refused_key": None, "retry_after_s": 0.0}

    db = Db(answer=answer, gate=gate)
    admissions = Admissions(db)
    first = asyncio.create_task(admissions.admit(LIMITS))
    await settle()
    failing = [asyncio.create_task(admissions.admit(LIMITS)) for _ in range(2)]
    await settle()
    gate.set()
    assert await first is None
    for task in failing:
        with pytest.raises(ConnectionError):
            await task
    assert await admissions.admit(LIMITS) is None  # a later command gets a check of its own


# --- aob_admit, read with PostgreSQL's parser ---------------------------------------------------


def statements(sql: str) -> list[Any]:
    return [raw.stmt for raw in pglast.parse_sql(sql)]


def function_body() -> list[dict[str, Any]]:
    """The top-level statements of aob_admit, as the PL/pgSQL parser reads them (it also
    checks the syntax of every SQL statement inside)."""
    create = next(s for s in statements(DDL) if isinstance(s, ast.CreateFunctionStmt))
    parsed = json.loads(parse_plpgsql_json(RawStream()(create) + ";"))
    body: list[dict[str, Any]] = parsed[0]["PLpgSQL_function"]["action"]["PLpgSQL_stmt_block"][
        "body"
    ]
    return body


def query_of(step: dict[str, Any]) -> str:
    ((kind, node),) = step.items()
    if kind in {"PLpgSQL_stmt_execsql", "PLpgSQL_stmt_perform"}:
        key = "sqlstmt" if kind == "PLpgSQL_stmt_execsql" else "expr"
        return str(node[key]["PLpgSQL_expr"]["query"])
    if kind == "PLpgSQL_stmt_assign":
        return str(node["expr"]["PLpgSQL_expr"]["query"])
    return kind


def test_the_ddl_parses_and_serialises_its_twins() -> None:
    found = statements(DDL)
    assert isinstance(found[0], ast.SelectStmt)
    assert "pg_advisory_xact_lock" in RawStream()(found[0])
    tables = {s.relation.relname: s for s in found if isinstance(s, ast.CreateStmt)}
    assert set(tables) == {"admission_windows", "admission_times"}
    assert all(s.if_not_exists for s in tables.values())
    index = next(s for s in found if isinstance(s, ast.IndexStmt))
    assert (index.relation.relname, [e.name for e in index.indexParams]) == (
        "admission_times",
        ["key", "at"],
    )
    create = next(s for s in found if isinstance(s, ast.CreateFunctionStmt))
    assert create.replace and create.funcname[-1].sval == "aob_admit_up_to"
    options = {o.defname: o.arg for o in create.options}
    assert options["language"].sval == "plpgsql"
    assert options["volatility"].sval == "volatile"  # a new snapshot per statement


def test_aob_admit_locks_in_key_order_before_it_reads_the_clock_or_counts() -> None:
    steps = [query_of(step) for step in function_body()]
    made = steps.index(next(s for s in steps if s.startswith("INSERT INTO admission_windows")))
    locked = steps.index(next(s for s in steps if "FOR UPDATE" in s))
    clock = steps.index("t := clock_timestamp()")
    counted = steps.index("PLpgSQL_stmt_fori")
    assert made < locked < clock < counted

    (insert,) = statements(steps[made])
    assert insert.onConflictClause.action == enums.OnConflictAction.ONCONFLICT_NOTHING
    assert RawStream()(insert.selectStmt.sortClause[0].node) == "k"

    (lock,) = statements(steps[locked].replace("PERFORM", "SELECT", 1))
    (clause,) = lock.lockingClause
    assert clause.strength == enums.LockClauseStrength.LCS_FORUPDATE
    assert clause.waitPolicy == enums.LockWaitPolicy.LockWaitBlock  # waits its turn
    assert RawStream()(lock.sortClause[0].node) == "w.key"
    assert RawStream()(lock.whereClause) == "w.key = ANY(p_keys)"


def test_aob_admit_up_to_writes_only_the_admissions_every_key_has_room_for() -> None:
    # The parser ends the body with the implicit RETURN of a function with OUT parameters.
    body = [step for step in function_body() if list(step) != ["PLpgSQL_stmt_return"]]
    kinds = [next(iter(step)) for step in body]
    counted = kinds.index("PLpgSQL_stmt_fori")
    loop = json.dumps(body[counted])
    assert "admitted := least(admitted, greatest(p_limits[i] - n, 0))" in loop
    writing, refusing = body[counted + 1 :]
    branch = writing["PLpgSQL_stmt_if"]
    assert branch["cond"]["PLpgSQL_expr"]["query"] == "admitted > 0"
    writes = [query_of(step) for step in branch["then_body"]]
    assert writes[0].startswith("INSERT INTO admission_times (key, at)")
    assert "generate_series(1, admitted)" in writes[0]  # a row per admission and key
    assert writes[1].startswith("UPDATE admission_windows w SET in_window = w.in_window + admitted")
    # Nothing before it adds an admission, and the refusal only reads.
    for other in (json.dumps(body[: counted + 1]), json.dumps(refusing)):
        assert "INSERT INTO admission_times" not in other
        assert "in_window + " not in other
    assert refusing["PLpgSQL_stmt_if"]["cond"]["PLpgSQL_expr"]["query"] == "admitted < p_wanted"


def test_the_check_statement_calls_aob_admit_up_to_with_typed_arguments() -> None:
    (select,) = statements(ADMIT)
    call = RawStream()(select.fromClause[0])
    assert call == (
        "aob_admit_up_to(CAST($1 AS text[]), CAST($2 AS integer[]), "
        "CAST($3 AS double precision), CAST($4 AS integer))"
    )
