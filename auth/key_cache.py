"""What a process remembers of the keys it has checked, and for how long it may trust it.

Checking a key costs a PostgreSQL round trip, so each process remembers the answer (the
principal, or "no such key"). A revocation must still reach every process within a second:
``auth.revocations`` LISTENs for it and ``evict``s the key at once. A remembered answer is
therefore trusted for ``LISTENING_TTL_S`` only while that listener is known to be healthy,
that is, it confirmed its connection (``confirm``) less than ``CONFIRMED_WITHIN_S`` ago.
Otherwise (no listener, its connection lost, or gone silent) an answer is trusted for
``DEAF_TTL_S``, so a revocation it could not hear of takes effect within that time anyway.
When the listener loses or regains its connection everything is forgotten
(``forget_all``): a notification sent meanwhile is gone.

Entries are keyed by the sha256 of the whole key, and indexed by the key id, which the key's
own text carries (``aob_<key id>_<secret>``), so that a revocation (which names the id) also
evicts a "no such key" answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

LISTENING_TTL_S = 30.0
DEAF_TTL_S = 1.0
# The revocation listener confirms its connection this often (``auth.revocations``); a
# confirmation older than this means it may have missed a notification.
CONFIRMED_WITHIN_S = 1.0
MAX_ENTRIES = 10_000

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    stored_at: float
    key_id: str
    answer: T | None


class KeyCache(Generic[T]):
    """Answers by key hash, evicted by key id. ``clock`` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry[T]] = {}
        self._by_key_id: dict[str, set[str]] = {}
        self._confirmed_at: float | None = None

    def confirm(self) -> None:
        """The revocation listener's connection is up and has delivered every notification
        sent before now."""
        self._confirmed_at = self._clock()

    def deaf(self) -> None:
        """The listener lost its connection (or has none yet): trust answers briefly only,
        and forget those it may have missed a revocation of."""
        self._confirmed_at = None
        self.forget_all()

    @property
    def listening(self) -> bool:
        confirmed = self._confirmed_at
        return confirmed is not None and self._clock() - confirmed <= CONFIRMED_WITHIN_S

    @property
    def ttl_s(self) -> float:
        return LISTENING_TTL_S if self.listening else DEAF_TTL_S

    def get(self, digest: str) -> tuple[bool, T | None]:
        """(found, answer): an answer younger than ``ttl_s`` is found, even a None one."""
        entry = self._entries.get(digest)
        if entry is None:
            return False, None
        if self._clock() - entry.stored_at > self.ttl_s:
            self._drop(digest)
            return False, None
        return True, entry.answer

    def put(self, digest: str, key_id: str, answer: T | None) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self.forget_all()
        self._entries[digest] = _Entry(self._clock(), key_id, answer)
        self._by_key_id.setdefault(key_id, set()).add(digest)

    def evict(self, key_id: str) -> None:
        """Forget every answer about ``key_id`` (revoked: ask PostgreSQL again)."""
        for digest in self._by_key_id.pop(key_id, set()):
            self._entries.pop(digest, None)

    def forget_all(self) -> None:
        self._entries.clear()
        self._by_key_id.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, digest: str) -> None:
        entry = self._entries.pop(digest, None)
        if entry is not None:
            digests = self._by_key_id.get(entry.key_id)
            if digests is not None:
                digests.discard(digest)
                if not digests:
                    del self._by_key_id[entry.key_id]
