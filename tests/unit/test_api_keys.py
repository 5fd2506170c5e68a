"""API keys without PostgreSQL: scopes, the statements keys are made and revoked with, and the
cache that forgets a revoked key when the revocation is heard, or soon when it cannot be."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from auth import DEFAULT_SCOPES, SCOPES, Principal, UnknownScope, api_keys, parse_scopes
from auth.api_keys import DDL, REVOCATION_CHANNEL, authenticate, create_key, revoke_key
from auth.key_cache import CONFIRMED_WITHIN_S, DEAF_TTL_S, LISTENING_TTL_S, KeyCache

KEY = "aob_0123456789ab_" + "s" * 43
OTHER = "aob_ba9876543210_" + "t" * 43


# --- scopes -------------------------------------------------------------------------------


def test_the_scopes_are_the_shared_ones_and_the_default_is_all_but_admin() -> None:
    assert SCOPES == ("read", "publish", "submit", "approve", "patch", "admin")
    assert {"read", "publish", "submit", "approve", "patch"} == DEFAULT_SCOPES


@pytest.mark.parametrize(
    ("given", "scopes"),
    [
        (None, DEFAULT_SCOPES),
        ([], DEFAULT_SCOPES),
        (["read"], {"read"}),
        (["read", "submit"], {"read", "submit"}),
        (["read,submit"], {"read", "submit"}),
        (["read, submit", "approve"], {"read", "submit", "approve"}),
        (["admin"], {"admin"}),
    ],
)
def test_scopes_are_read_from_repeated_and_comma_separated_names(
    given: list[str] | None, scopes: set[str]
) -> None:
    assert parse_scopes(given) == scopes


def test_an_unknown_scope_is_refused_with_every_unknown_name_and_the_known_ones() -> None:
    with pytest.raises(UnknownScope) as refused:
        parse_scopes(["read", "write,root"])
    assert refused.value.scopes == ["root", "write"]
    assert str(refused.value) == (
        "unknown scopes 'root', 'write': a scope is one of "
        "read, publish, submit, approve, patch, admin"
    )
    assert isinstance(refused.value, ValueError)


def test_admin_allows_every_scope_and_others_only_their_own() -> None:
    submitter = Principal(tenant="t", key_id="k", scopes=frozenset({"submit"}))
    assert submitter.allows("submit")
    assert not submitter.allows("approve")
    admin = Principal(tenant="t", key_id="k", scopes=frozenset({"admin"}))
    assert all(admin.allows(s) for s in SCOPES)
    # A principal made without scopes (every key before scopes existed) can do all but admin.
    legacy = Principal(tenant="t", key_id="k")
    assert all(legacy.allows(s) for s in DEFAULT_SCOPES) and not legacy.allows("admin")


def test_the_table_gains_scopes_idempotently_with_the_default_for_old_keys() -> None:
    sql = " ".join(DDL.split())
    assert (
        "ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS scopes text[] NOT NULL "
        "DEFAULT '{read,publish,submit,approve,patch}'"
    ) in sql
    assert "ADD COLUMN IF NOT EXISTS name text" in sql
    assert "ADD COLUMN IF NOT EXISTS last_used_at timestamptz" in sql
    assert sql.startswith("SELECT pg_advisory_xact_lock(")  # processes starting together


# --- statements ---------------------------------------------------------------------------


class FakeDb:
    """Records statements; answers each fetchrow with the next of ``rows``."""

    def __init__(self, *rows: Any) -> None:
        self.rows = list(rows)
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    async def execute(self, query: str, *args: object) -> str:
        self.calls.append((query, args))
        return "OK"

    async def fetchrow(self, query: str, *args: object) -> Any:
        self.calls.append((query, args))
        return self.rows.pop(0) if self.rows else None

    async def fetch(self, query: str, *args: object) -> list[Any]:
        self.calls.append((query, args))
        return self.rows


def _row(key_id: str = "0123456789ab", **over: Any) -> dict[str, Any]:
    row = {
        "key_id": key_id,
        "tenant": "acme",
        "name": None,
        "scopes": ["read", "submit"],
        "created_at": datetime(2026, 12, 5, tzinfo=UTC),
        "last_used_at": None,
        "revoked_at": None,
    }
    return {**row, **over}


async def test_a_key_is_made_with_its_scopes_in_order_and_shown_once() -> None:
    db = FakeDb(_row(scopes=["read", "submit"], name="ci"))
    made = await create_key(db, "acme", ["submit", "read"], "ci")
    query, args = db.calls[0]
    assert query.startswith("INSERT INTO api_keys")
    key_id, tenant, digest, scopes, name = args
    assert re.fullmatch(r"aob_[a-z0-9]{12}_[A-Za-z0-9_-]{43}", made.key)
    assert made.key.split("_")[1] == key_id and tenant == "acme" and name == "ci"
    assert digest == api_keys._hash(made.key) and made.key not in args  # only the hash
    assert scopes == ["read", "submit"]
    assert made.info.as_json()["scopes"] == ["read", "submit"]
    assert "key_hash" not in made.info.as_json()


@pytest.mark.parametrize(
    ("tenant", "scopes", "name", "says"),
    [
        ("acme", ["approve", "sudo"], None, "unknown scope 'sudo'"),
        ("no tenant", None, None, "tenant 'no tenant'"),
        ("acme", None, "x" * 101, "at most 100"),
        ("acme", None, "a\nb", "printable"),
    ],
)
async def test_a_bad_key_request_is_refused_before_any_statement(
    tenant: str, scopes: list[str] | None, name: str | None, says: str
) -> None:
    db = FakeDb()
    with pytest.raises(ValueError, match=re.escape(says)):
        await create_key(db, tenant, scopes, name)
    assert db.calls == []


async def test_a_revocation_notifies_every_process_in_its_own_statement() -> None:
    db = FakeDb(_row(revoked_at=datetime(2026, 12, 5, 1, tzinfo=UTC)))
    revoked = await revoke_key(db, "0123456789ab", "acme")
    assert revoked is not None and revoked.revoked_at is not None
    [(query, args)] = db.calls  # one statement: the NOTIFY commits with the revocation
    assert f"pg_notify('{REVOCATION_CHANNEL}', revoked.key_id)" in query
    assert "tenant = $2" in query
    assert args == ("0123456789ab", "acme")


async def test_revoking_what_is_no_key_id_asks_nothing() -> None:
    db = FakeDb()
    assert await revoke_key(db, "'; DROP TABLE api_keys; --") is None
    assert db.calls == []


# --- the cache ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class KeyTable(FakeDb):
    """The api_keys table as ``authenticate`` reads it, one lookup per call counted."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, dict[str, Any]] = {}

    def add(self, key: str, scopes: list[str]) -> None:
        digest = api_keys._hash(key)
        self.keys[digest] = {
            "key_id": key.split("_")[1],
            "tenant": "acme",
            "key_hash": digest,
            "scopes": scopes,
        }

    def revoke(self, key: str) -> None:
        del self.keys[api_keys._hash(key)]

    async def fetchrow(self, query: str, *args: object) -> Any:
        self.calls.append((query, args))
        return self.keys.get(str(args[0]))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> KeyCache[Principal]:
    return KeyCache(clock)


async def test_a_checked_key_carries_its_scopes(cache: KeyCache[Principal]) -> None:
    table = KeyTable()
    table.add(KEY, ["submit", "approve"])
    principal = await authenticate(table, f"Bearer {KEY}", cache)
    assert principal == Principal("acme", "0123456789ab", frozenset({"submit", "approve"}))


async def test_a_key_is_remembered_long_only_while_the_listener_vouches(
    cache: KeyCache[Principal], clock: Clock
) -> None:
    table = KeyTable()
    table.add(KEY, ["read"])
    cache.confirm()
    assert cache.ttl_s == LISTENING_TTL_S
    await authenticate(table, f"Bearer {KEY}", cache)
    clock.now += CONFIRMED_WITHIN_S / 2
    cache.confirm()  # a heartbeat answered
    clock.now += CONFIRMED_WITHIN_S / 2
    await authenticate(table, f"Bearer {KEY}", cache)
    assert len(table.calls) == 1  # remembered

    # The heartbeats stop (a silent network): past CONFIRMED_WITHIN_S the answer is trusted
    # for DEAF_TTL_S only, so a revocation this process cannot hear of still takes effect.
    clock.now += CONFIRMED_WITHIN_S + 0.01
    assert cache.ttl_s == DEAF_TTL_S
    table.revoke(KEY)
    assert await authenticate(table, f"Bearer {KEY}", cache) is None
    assert len(table.calls) == 2


async def test_without_a_listener_an_answer_is_trusted_for_a_second_at_most(
    cache: KeyCache[Principal], clock: Clock
) -> None:
    table = KeyTable()
    table.add(KEY, ["read"])
    assert await authenticate(table, f"Bearer {KEY}", cache) is not None
    clock.now += DEAF_TTL_S / 2
    assert await authenticate(table, f"Bearer {KEY}", cache) is not None
    assert len(table.calls) == 1
    table.revoke(KEY)
    clock.now += DEAF_TTL_S / 2 + 0.01
    assert await authenticate(table, f"Bearer {KEY}", cache) is None
    assert DEAF_TTL_S <= 1.0


async def test_a_revocation_evicts_the_key_at_once_and_leaves_the_others(
    cache: KeyCache[Principal],
) -> None:
    table = KeyTable()
    table.add(KEY, ["read"])
    table.add(OTHER, ["read"])
    cache.confirm()
    await authenticate(table, f"Bearer {KEY}", cache)
    await authenticate(table, f"Bearer {OTHER}", cache)
    table.revoke(KEY)
    assert await authenticate(table, f"Bearer {KEY}", cache) is not None  # not heard yet
    cache.evict("0123456789ab")
    assert await authenticate(table, f"Bearer {KEY}", cache) is None
    await authenticate(table, f"Bearer {OTHER}", cache)
    assert len(table.calls) == 3  # OTHER was asked once only


async def test_losing_the_listener_forgets_every_answer(cache: KeyCache[Principal]) -> None:
    table = KeyTable()
    table.add(KEY, ["read"])
    cache.confirm()
    await authenticate(table, f"Bearer {KEY}", cache)
    assert len(cache) == 1
    cache.deaf()
    assert len(cache) == 0 and not cache.listening


async def test_an_unknown_key_is_remembered_and_evicted_by_its_id_too(
    cache: KeyCache[Principal],
) -> None:
    table = KeyTable()
    assert await authenticate(table, f"Bearer {KEY}", cache) is None
    cache.evict("0123456789ab")  # the id comes from the key's own text
    assert len(cache) == 0


async def test_a_malformed_header_asks_nothing(cache: KeyCache[Principal]) -> None:
    table = KeyTable()
    for header in (None, "", KEY, f"Basic {KEY}", "Bearer aob_short_x"):
        assert await authenticate(table, header, cache) is None
    assert table.calls == []
