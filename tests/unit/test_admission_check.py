"""Admission (``limits.admission_check``) without a server: which limits a command counts
against and under which keys, what a refusal says, what is sent to PostgreSQL, and the shape
of ``aob_admit`` read with PostgreSQL's own parser (libpg_query, through pglast): the order of
its steps is what makes it exact (rows made, then locked in key order, then the clock read,
then counted; written only if every key has room). That it admits exactly its limits under
concurrent callers is the connected lane's to show."""

from __future__ import annotations

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
    """Answers ``aob_admit`` with ``row``, and records what it was asked."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.asked: list[tuple[Any, ...]] = []

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        self.asked.append((query, *args))
        return self.row

    async def execute(self, query: str, *args: Any) -> str:
        raise AssertionError("admission is one fetchrow")


LIMITS = submission_limits("acme", DEFAULTS, AGENTIC, 1000)


async def test_one_statement_with_every_key_and_limit() -> None:
    db = Db({"admitted": True, "refused_key": None, "retry_after_s": 0.0})
    assert await Admissions(db).admit(LIMITS) is None
    assert db.asked == [
        (
            ADMIT,
            ["tenant:acme:tier:agentic", "tenant:acme:submissions", "global:submissions"],
            [20, 300, 1000],
            WINDOW_S,
        )
    ]


async def test_the_refused_key_becomes_its_limits_refusal() -> None:
    db = Db({"admitted": False, "refused_key": "tenant:acme:submissions", "retry_after_s": 2.2})
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
    assert create.replace and create.funcname[-1].sval == "aob_admit"
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


def test_aob_admit_writes_admissions_only_when_every_key_has_room() -> None:
    # The parser ends the body with the implicit RETURN of a function with OUT parameters.
    body = [step for step in function_body() if list(step) != ["PLpgSQL_stmt_return"]]
    last = body[-1]
    assert list(last) == ["PLpgSQL_stmt_if"]
    branch = last["PLpgSQL_stmt_if"]
    assert branch["cond"]["PLpgSQL_expr"]["query"] == "admitted"
    writes = [query_of(step) for step in branch["then_body"]]
    assert writes[0].startswith("INSERT INTO admission_times (key, at) SELECT k, t")
    assert writes[1].startswith("UPDATE admission_windows w SET in_window = w.in_window + 1")
    # Nothing before it adds an admission.
    earlier = json.dumps(body[:-1])
    assert "INSERT INTO admission_times" not in earlier
    assert "in_window + 1" not in earlier


def test_the_check_statement_calls_aob_admit_with_typed_arrays() -> None:
    (select,) = statements(ADMIT)
    call = RawStream()(select.fromClause[0])
    assert (
        call == "aob_admit(CAST($1 AS text[]), CAST($2 AS integer[]), CAST($3 AS double precision))"
    )
