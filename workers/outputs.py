"""What a node's output must be to leave the worker: a value under the rules that every value
in AOB obeys (``schemas.values``), and no larger than the worker's limit.

An output that breaks them could not be carried further: an event that fails to encode (a
lone surrogate, a value nested a few hundred levels), a row PostgreSQL refuses (a NUL), a
number that a reader silently turns into another (NaN becomes ``null``, ``10**400`` loses
its digits in JavaScript). Refused here, it fails its node with the path of what broke the
rule, once, instead of failing later and far away, where nothing can report it. The check
walks the value without recursion, before anything that recurses (JSON encoding, pydantic).

The size limit (``AOB_WORKERS_MAX_OUTPUT_BYTES``, measured as canonical JSON) exists because
an output is read back whole, by every node downstream and by the read side: the CAS holds
outputs too large for an event, not outputs of any size.
"""

from __future__ import annotations

from typing import Any

from schemas.canonical import canonical_json
from schemas.values import ValueRefused, check_value
from workers.errors import OutputRefused

DEFAULT_MAX_OUTPUT_BYTES = 10 * 1024 * 1024


def encoded_output(output: Any, max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> bytes:
    """The canonical JSON of ``output``, or ``OutputRefused`` saying which part breaks which
    rule (``output.body.items[3].name: a string contains a NUL character …``)."""
    try:
        check_value(output, "output")
    except ValueRefused as e:
        raise OutputRefused(f"output refused: {e}") from e
    data = canonical_json(output)
    if len(data) > max_bytes:
        raise OutputRefused(
            f"output refused: it is {len(data)} bytes of JSON; the limit is {max_bytes} "
            "(AOB_WORKERS_MAX_OUTPUT_BYTES)"
        )
    return data
