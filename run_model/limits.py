"""How large a decision may get: every event the run model decides fits in one Kafka record.

The coordinator checks every record before it goes out and fails the run rather than send
what the broker would refuse (``processors.outbox``); but a check can only refuse. Here the
decisions are shaped to fit in the first place, so that a refusal there means a bug, not a
large input:

- text a decision copies from outside (a node's error, a reviewer's comment, a cancel's
  reason, the reasons a patch is refused, which may echo its operations) is capped, and made
  encodable (a lone surrogate in a worker's error would make the event unencodable);
- a run's output carries inline only what fits in a budget and names the rest
  (``run_model.completion``);
- a patch refusal keeps at most ``PATCH_MAX_REASONS`` reasons and leaves the current
  definition out when it would not fit (``patch_refusal``).
"""

from __future__ import annotations

from typing import Any

from schemas.canonical import canonical_json
from schemas.events import MAX_EVENT_BYTES, PatchRejectedPayload

TEXT_MAX_CHARS = 2_000
# An approval's comment becomes the hitl node's output: the command API's own limit, so
# that a comment it accepted is never cut.
COMMENT_MAX_CHARS = 4_000
PATCH_REASON_MAX_CHARS = 1_000
PATCH_MAX_REASONS = 50
# Room an event keeps for its envelope (ids, actor, type) and its small fields.
ENVELOPE_ROOM_BYTES = 32 * 1024


def capped(text: str, limit: int = TEXT_MAX_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters (saying how much was cut), with any
    character UTF-8 cannot encode (a lone surrogate) replaced."""
    if len(text) > limit:
        keep = max(limit - 40, 0)
        text = f"{text[:keep]}… [{len(text) - keep} more characters]"
    return text.encode("utf-8", "replace").decode("utf-8")


def json_size(value: Any) -> int | None:
    """Bytes of ``value``'s canonical JSON; None if it has none (it cannot be encoded: a lone
    surrogate, nesting deeper than the encoder goes, a value that is not JSON)."""
    try:
        return len(canonical_json(value))
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None


def patch_refusal(
    patch_id: str,
    reasons: list[str],
    current_version: str | None = None,
    current_definition: dict[str, Any] | None = None,
) -> PatchRejectedPayload:
    """A refusal that fits in an event whatever the patch was: at most
    ``PATCH_MAX_REASONS`` reasons of at most ``PATCH_REASON_MAX_CHARS`` each (a reason may
    quote the patch, or the document an operation did not find its path in), and the
    current definition only if it fits beside them; if not, a reason says where to read it."""
    kept = [capped(r, PATCH_REASON_MAX_CHARS) for r in reasons[:PATCH_MAX_REASONS]]
    if len(reasons) > PATCH_MAX_REASONS:
        kept.append(f"… and {len(reasons) - PATCH_MAX_REASONS} more reasons")
    if current_definition is not None:
        size = json_size(current_definition)
        room = MAX_EVENT_BYTES - ENVELOPE_ROOM_BYTES - (json_size(kept) or 0)
        if size is None or size > room:
            kept.append(
                f"the run's current definition (version {current_version}) is too large to "
                "send with this answer: read it from the run's versions on the read side"
            )
            current_definition = None
    return PatchRejectedPayload(
        patch_id=patch_id,
        reasons=kept,
        current_version=current_version,
        current_definition=current_definition,
    )
