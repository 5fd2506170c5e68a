"""What an API key may do: its scopes.

A key carries a set of scope names, each the right to one kind of call: ``read`` (GraphQL
queries and subscriptions, REST GETs), ``publish`` (workflows), ``submit`` (runs, cancels,
forks), ``approve`` (approvals), ``patch`` (patches), ``admin`` (the tenant's keys and
secrets). ``admin`` implies every other scope. A key made without scopes, and every key made
before scopes existed, has every scope but ``admin``: what it could do then, it can do now.

Splitting ``approve`` from ``submit`` is what keeps whoever submits a run from approving its
own approval: give the submitting service a key without ``approve``.
"""

from __future__ import annotations

from collections.abc import Iterable

READ = "read"
PUBLISH = "publish"
SUBMIT = "submit"
APPROVE = "approve"
PATCH = "patch"
ADMIN = "admin"

# In the order they are listed to people (help texts, errors, `aob keys list`).
SCOPES: tuple[str, ...] = (READ, PUBLISH, SUBMIT, APPROVE, PATCH, ADMIN)
DEFAULT_SCOPES: frozenset[str] = frozenset(SCOPES) - {ADMIN}


class UnknownScope(ValueError):
    """A scope name that is not one of ``SCOPES`` (its ``scopes``: every unknown one)."""

    def __init__(self, scopes: list[str]) -> None:
        names = ", ".join(repr(s) for s in scopes)
        noun = "scope" if len(scopes) == 1 else "scopes"
        super().__init__(f"unknown {noun} {names}: a scope is one of {', '.join(SCOPES)}")
        self.scopes = scopes


def parse_scopes(given: Iterable[str] | None) -> frozenset[str]:
    """The scopes named in ``given``; each item may hold several, comma-separated (so that
    ``--scope read --scope submit`` and ``--scopes read,submit`` read alike). None or
    nothing at all gives ``DEFAULT_SCOPES``; an unknown name raises ``UnknownScope``."""
    if given is None:
        return DEFAULT_SCOPES
    names = [part.strip() for item in given for part in item.split(",") if part.strip()]
    if not names:
        return DEFAULT_SCOPES
    unknown = sorted({n for n in names if n not in SCOPES})
    if unknown:
        raise UnknownScope(unknown)
    return frozenset(names)


def ordered(scopes: Iterable[str]) -> list[str]:
    """``scopes`` in the order of ``SCOPES`` (stored and shown that way)."""
    held = set(scopes)
    return [s for s in SCOPES if s in held]


def allows(scopes: frozenset[str], scope: str) -> bool:
    """Whether a key holding ``scopes`` may do what ``scope`` names (``admin``: anything)."""
    return scope in scopes or ADMIN in scopes
