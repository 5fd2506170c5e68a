"""The ``patch_workflow`` tool: submit the model's patch, wait for the coordinator's verdict,
and tell the model what became of it.

The agent never applies anything itself: it appends a PatchSubmitted to the run's stream and
the coordinator, the single writer of decisions, judges it (DESIGN.md, Patching). The patch's
id is its event id, a pure function of the attempt, the place of the call in the
conversation (turn, index) and the patch's content: a redelivered task whose model proposes
the same patch appends the same id, which the coordinator drops as a duplicate, while a
different patch gets a new one.

One attempt may patch several times. Each patch is written against the version the model was
last shown: the task's at first, then the one its own last patch produced, or the one a
refusal reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from schemas.canonical import canonical_json, sha256_hex
from schemas.envelope import Actor, build_event, deterministic_id
from schemas.events import PatchApplied, PatchRejected, PatchSubmitted, PatchSubmittedPayload
from workers.agent.verdicts import VerdictQuery, VerdictSource
from workers.errors import NodeError
from workers.handlers.base import Job

# Stop waiting for a verdict this long before the attempt's deadline, so that the node fails
# with the reason below rather than with the executor's bare timeout.
DEADLINE_MARGIN_S = 1.0

REFUSED_TAIL = "Correct the patch and call patch_workflow again, or finish."


@dataclass(frozen=True)
class PatchCall:
    """A ``patch_workflow`` call whose arguments have the right shape."""

    patch: list[Any]
    reason: str


def compact_json(value: Any) -> str:
    """The definition as the model sees it: canonical JSON, no spaces."""
    return canonical_json(value).decode()


def patch_id(job: Job, turn: int, index: int, call: PatchCall) -> str:
    """The PatchSubmitted's event id (see the module doc)."""
    content = sha256_hex(canonical_json({"patch": call.patch, "reason": call.reason}))
    return deterministic_id(job.task.task_id, "patch", str(turn), str(index), content)


def _names(ids: list[str]) -> str:
    return ", ".join(ids) if ids else "none"


def accepted_reply(verdict: PatchApplied) -> str:
    p = verdict.payload
    return (
        f"accepted: the run is now at version {p.to_version} (added: {_names(p.added_nodes)}; "
        f"removed: {_names(p.removed_nodes)}; changed: {_names(p.changed_nodes)}). "
        f"Current definition: {compact_json(p.definition)}"
    )


def refused_reply(verdict: PatchRejected) -> str:
    p = verdict.payload
    reasons = p.reasons or ["the coordinator gave no reason"]
    lines = ["refused, nothing was applied:", *(f"- {r}" for r in reasons)]
    if p.current_definition is not None:
        lines.append(
            f"The run is at version {p.current_version}; write the patch against its current "
            f"definition: {compact_json(p.current_definition)}"
        )
    lines.append(REFUSED_TAIL)
    return "\n".join(lines)


class Patcher:
    """One attempt's patches (see the module doc)."""

    def __init__(
        self,
        job: Job,
        verdicts: VerdictSource,
        *,
        deadline: float,
        clock: Callable[[], float],
    ) -> None:
        self._job = job
        self._verdicts = verdicts
        self._deadline = deadline
        self._clock = clock
        self.version: str | None = job.task.version

    def submission(self, call: PatchCall, turn: int, index: int) -> PatchSubmitted:
        task = self._job.task
        payload = PatchSubmittedPayload(
            patch=call.patch,
            reason=call.reason,
            base_version=self.version,
            node_id=task.node_id,
            attempt=task.attempt,
        )
        return build_event(
            PatchSubmitted,
            payload,
            event_id=patch_id(self._job, turn, index, call),
            aggregate_id=task.run_id,
            causation_id=task.task_id,
            actor=Actor(kind="agent", id=f"{task.run_id}/{task.node_id}", tenant=task.tenant),
        )

    async def submit(self, call: PatchCall, turn: int, index: int) -> str:
        """Append the patch, wait for its verdict, and return the answer for the model.

        NodeError (retryable) when no verdict comes in time or the log cannot be read.
        """
        submitted = self.submission(call, turn, index)
        where = await self._job.emit(submitted)
        timeout = self._deadline - DEADLINE_MARGIN_S - self._clock()
        query = VerdictQuery(
            run_id=self._job.task.run_id,
            patch_id=submitted.event_id,
            submitted=where,
            since=self._job.task.scheduled_at,
            timeout_s=max(timeout, 0.0),
        )
        try:
            verdict = await self._verdicts.wait(query)
        except KafkaError as e:
            raise NodeError(
                f"could not read the verdict on patch {submitted.event_id}: {e}", retryable=True
            ) from e
        if verdict is None:
            raise NodeError(
                f"no verdict on patch {submitted.event_id} within {max(timeout, 0.0):.0f}s "
                "(is the coordinator running?)",
                retryable=True,
            )
        if isinstance(verdict, PatchApplied):
            self.version = verdict.payload.to_version
            return accepted_reply(verdict)
        if verdict.payload.current_version is not None:
            self.version = verdict.payload.current_version
        return refused_reply(verdict)
