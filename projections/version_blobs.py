"""Putting the definitions and IRs of patched versions in the CAS, for the projector.

The coordinator does no storage I/O (DESIGN.md): its PatchApplied carries the new version's
definition and IR inline, with the refs they will have. The projector is the first reader
that may do I/O, so it stores them, once per batch and before the batch commits: if a write
fails, the batch (and its offsets) roll back and are projected again, so a version whose
rows are committed always has its blobs. Writes are idempotent (the name is the hash), so a
replayed batch only rewrites the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from projections.errors import BlobWriteFailed
from projections.patch_rows import Blob

log = logging.getLogger(__name__)


class JsonStore(Protocol):
    async def put_json(self, value: Any) -> tuple[str, int]: ...


async def store_blobs(cas: JsonStore, blobs: Sequence[Blob]) -> None:
    """Store every blob (each distinct ref once), concurrently: the CAS runs each write in a
    thread, and one small write can take ~25 ms, so a batch of patches must not wait for
    them one by one. A stored ref that differs from the event's is logged, not raised: the
    event is a fact already in the log, and stopping the projector would stop every run's
    read side for one producer's bug."""
    unique = list({b.expected_ref: b for b in blobs}.values())
    if not unique:
        return
    try:
        results = await asyncio.gather(*(cas.put_json(b.value) for b in unique))
    except Exception as e:  # any storage fault: the runner retries the batch
        raise BlobWriteFailed(f"storing {len(unique)} version blob(s) in the CAS: {e}") from e
    for blob, (ref, _size) in zip(unique, results, strict=True):
        if ref != blob.expected_ref:
            log.error(
                "the %s was stored as %s, but its event names it %s",
                blob.what,
                ref,
                blob.expected_ref,
            )
