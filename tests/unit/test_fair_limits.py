"""Fair execution's limits: the tenant's document (``execution``), and the SQL that holds
concurrency keys and rate limits across worker processes, read with PostgreSQL's own parser
(pglast): every statement parses, each is one statement, each upsert's
conflict target is its table's key and its update decides on the locked row, the parameters
are the ones the Python passes, and time is read from one clock per statement. Whether the
statements do what they say on a live server is the connected lane's to show; the rate rule
itself is checked here on its Python statement (``take_at``)."""

from __future__ import annotations

import pglast
import pytest
from pglast import ast, enums
from pglast.visitors import Visitor

from limits import concurrency_leases as leases
from limits import rate_buckets as rates
from limits.execution import ExecutionLimits, RateLimit


def one(sql: str) -> ast.Node:
    (raw,) = pglast.parse_sql(sql)
    return raw.stmt


class Found(Visitor):
    def __init__(self) -> None:
        self.functions: set[str] = set()
        self.params: set[int] = set()

    def visit_FuncCall(self, ancestors: object, node: ast.FuncCall) -> None:
        self.functions.add(node.funcname[-1].sval)

    def visit_ParamRef(self, ancestors: object, node: ast.ParamRef) -> None:
        self.params.add(node.number)


def found(sql: str) -> Found:
    f = Found()
    f(pglast.parse_sql(sql))
    return f


def primary_key(ddl: str, table: str) -> list[str]:
    for raw in pglast.parse_sql(ddl):
        stmt = raw.stmt
        if isinstance(stmt, ast.CreateStmt) and stmt.relation.relname == table:
            for element in stmt.tableElts:
                if (
                    isinstance(element, ast.Constraint)
                    and element.contype == enums.ConstrType.CONSTR_PRIMARY
                ):
                    return [k.sval for k in element.keys]
    raise AssertionError(f"no primary key for {table}")


STATEMENTS = {
    "leases.ACQUIRE": (leases.ACQUIRE, 5),
    "leases.RENEW": (leases.RENEW, 2),
    "leases.RELEASE": (leases.RELEASE, 4),
    "leases.SWEEP": (leases.SWEEP, 1),
    "leases.RUNNING": (leases.RUNNING, 2),
    "rates.TAKE": (rates.TAKE, 4),
}


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_each_statement_is_one_statement_with_the_parameters_passed(name: str) -> None:
    sql, arity = STATEMENTS[name]
    one(sql)
    assert found(sql).params == set(range(1, arity + 1))


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_time_is_read_once_per_statement(name: str) -> None:
    # now() would be the transaction's start, clock_timestamp() changes within a statement:
    # statement_timestamp() is one value for the whole statement, from the server's clock.
    functions = found(STATEMENTS[name][0]).functions
    assert not functions & {"now", "clock_timestamp", "transaction_timestamp"}


def test_the_tables_are_keyed_as_the_upserts_expect() -> None:
    assert primary_key(leases.DDL, "concurrency_leases") == ["tenant", "key", "slot"]
    assert primary_key(rates.DDL, "rate_buckets") == ["tenant", "name"]
    for ddl in (leases.DDL, rates.DDL):  # made by any process that starts: serialised
        first = pglast.parse_sql(ddl)[0].stmt
        assert "pg_advisory_xact_lock" in pglast.stream.RawStream()(first)


def conflict(stmt: ast.Node) -> ast.OnConflictClause:
    assert isinstance(stmt, ast.InsertStmt) and stmt.onConflictClause is not None
    return stmt.onConflictClause


def test_acquiring_takes_a_free_slot_below_the_limit_or_an_expired_one_and_nothing_else() -> None:
    stmt = one(leases.ACQUIRE)
    clause = conflict(stmt)
    assert stmt.relation.relname == "concurrency_leases"
    assert [e.name for e in clause.infer.indexElems] == ["tenant", "key", "slot"]
    assert clause.action == enums.OnConflictAction.ONCONFLICT_UPDATE
    # A held slot is taken over only when its lease has expired: the condition is on the
    # locked row (the alias), so of two racing takers one wins.
    where = pglast.stream.RawStream()(clause.whereClause)
    assert where == "held.expires_at <= statement_timestamp()"
    text = " ".join(leases.ACQUIRE.split())
    assert "generate_series(0, $3::integer - 1)" in text  # slots 0 .. limit-1
    assert "LIMIT 1" in text  # one slot per acquire
    assert "RETURNING held.slot" in text


def test_renewing_and_releasing_touch_only_the_holders_own_rows() -> None:
    renew = pglast.stream.RawStream()(one(leases.RENEW))
    assert "WHERE holder = ANY(CAST($1 AS text[]))" in renew
    release = pglast.stream.RawStream()(one(leases.RELEASE))
    assert release.endswith("WHERE tenant = $1 AND key = $2 AND slot = $3 AND holder = $4")
    sweep = pglast.stream.RawStream()(one(leases.SWEEP))
    assert "expires_at < statement_timestamp() - make_interval" in sweep


def test_a_take_decides_on_the_locked_row_and_returns_what_it_decided() -> None:
    stmt = one(rates.TAKE)
    clause = conflict(stmt)
    assert stmt.relation.relname == "rate_buckets"
    assert [e.name for e in clause.infer.indexElems] == ["tenant", "name"]
    assert clause.action == enums.OnConflictAction.ONCONFLICT_UPDATE
    assert clause.whereClause is None  # always written, so RETURNING always reports
    assert [t.name for t in clause.targetList] == ["granted", "tat"]
    returned = [t.name or t.val.fields[-1].sval for t in stmt.returningClause.exprs]
    assert returned == ["granted", "wait_s"]


# --- the rate rule -----------------------------------------------------------------------


def calls(limit: RateLimit, at: list[float]) -> list[bool]:
    tat = None
    out = []
    for now in at:
        granted, tat, _ = rates.take_at(tat, now, limit.emission_s, limit.capacity)
        out.append(granted)
    return out


def test_a_full_bucket_grants_its_burst_at_once_then_one_per_emission() -> None:
    limit = RateLimit(limit=3, per_seconds=60)  # burst 3, then one every 20 s
    assert calls(limit, [0, 0, 0, 0]) == [True, True, True, False]
    assert calls(limit, [0, 0, 0, 19.9, 20.0, 20.0]) == [True, True, True, False, True, False]


def test_a_refusal_says_when_the_next_call_can_go() -> None:
    limit = RateLimit(limit=2, per_seconds=60)
    tat = None
    for _ in range(2):
        _, tat, _ = rates.take_at(tat, 0.0, limit.emission_s, limit.capacity)
    granted, after, wait = rates.take_at(tat, 10.0, limit.emission_s, limit.capacity)
    assert not granted and after == tat and wait == pytest.approx(20.0)
    assert rates.take_at(tat, 10.0 + wait, limit.emission_s, limit.capacity)[0]


def test_over_a_long_stretch_the_rate_is_the_limit() -> None:
    limit = RateLimit(limit=8, per_seconds=1, burst=1)  # times in exact binary fractions
    granted = calls(limit, [i / 64 for i in range(1000)])  # asked 64 times a second
    assert sum(granted) == 125  # 15.625 s at 8 a second


def test_a_burst_may_be_set_apart_from_the_limit() -> None:
    limit = RateLimit(limit=60, per_seconds=60, burst=5)
    assert calls(limit, [0.0] * 6) == [True] * 5 + [False]


# --- the tenant's document ----------------------------------------------------------


@pytest.mark.parametrize("bad", [{"http": 0}, {"*": 10_001}])
def test_a_tenants_concurrency_is_bounded(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="concurrency must be"):
        ExecutionLimits(concurrency=bad)


def test_the_concurrency_of_a_type_falls_back_to_any_type() -> None:
    limits = ExecutionLimits(concurrency={"*": 4, "agent": 2})
    assert limits.concurrency_of("agent") == 2 and limits.concurrency_of("http") == 4
    assert ExecutionLimits(concurrency={"agent": 2}).concurrency_of("http") is None
