"""Judging a patch of a live run (DESIGN.md, Patching a running workflow).

``judge(state, submitted, limits)`` is pure: the same run state, patch and limits always give
the same verdict, so a coordinator that replays after a crash judges exactly as before. A
patch is applied to a copy of the run's current definition, one operation at a time, and
accepted only if every rule holds for the result; otherwise nothing of it applies and every
broken rule is given back as a reason, worded so that a person or a model can fix the patch:

- well-formed RFC 6902 (``jsonpatch``), and at most ``max_ops`` operations;
- the result is a valid definition, as publishing requires (shape, known node types,
  well-formed guards, acyclic);
- nothing that has been scheduled, has started or has finished changes: such a node keeps its
  definition, its incoming edges, and its outgoing edges (new edges may leave it);
- every node added or left without predecessors was a root already: a node that nothing
  leads to would never start (every node stays reachable from the run's start);
- bounds per run: nodes, applied patches, and agent nodes added on agents' proposals (the
  spawn limit), so a model steered by what it read cannot grow a run without end;
- an agent's patch leaves alone what it did not add, and gives no node a tool
  (``run_model.agent_policy``, whose rules each reason names);
- the run's budget stays as it was submitted (only a person's approval raises it), and no
  agent node added or changed names a model the tenant did not allow when the run started.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import jsonpointer
from pydantic import ValidationError

from run_model.agent_policy import agent_policy_reasons, is_agent_patch
from run_model.patch_diff import PatchDiff, edge_text
from run_model.state import NodeStatus, RunState
from schemas.budgets import model_refusals
from schemas.canonical import canonical_json
from schemas.commands import MAX_PATCH_OPS
from schemas.compiler import compile_workflow, validate_graph
from schemas.events import MAX_EVENT_BYTES, PatchSubmitted
from schemas.ir import WorkflowIR
from schemas.workflow import MAX_NODES, WorkflowDefinition

DEFAULT_MAX_OPS = MAX_PATCH_OPS
DEFAULT_AGENT_SPAWN_LIMIT = 5
DEFAULT_MAX_PATCHES = 100
# The new definition and its IR travel inline in run.patch_applied: keep room in an event
# for the envelope and the lists of changed nodes.
MAX_VERSION_BYTES = MAX_EVENT_BYTES - 64 * 1024


@dataclass(frozen=True)
class PatchLimits:
    """The bounds a patch is judged by (``AOB_COORDINATOR_*`` settings)."""

    max_ops: int = DEFAULT_MAX_OPS
    max_nodes: int = MAX_NODES
    agent_spawn_limit: int = DEFAULT_AGENT_SPAWN_LIMIT
    max_patches: int = DEFAULT_MAX_PATCHES


@dataclass(frozen=True)
class Accepted:
    """The run's next version, and what changed from the current one."""

    definition: dict[str, Any]
    ir: WorkflowIR
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    agent_spawns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Refused:
    reasons: list[str]
    stale: bool = False  # written against a version the run has left: send the current one


Verdict = Accepted | Refused


def judge(state: RunState, submitted: PatchSubmitted, limits: PatchLimits) -> Verdict:
    """The verdict on ``submitted`` for the run in ``state`` (not finished)."""
    p = submitted.payload
    if state.cancel_requested:
        return Refused(["the run is being cancelled: it takes no more patches"])
    if p.base_version is not None and p.base_version != state.version:
        return Refused(
            [
                f"the patch was written against version {p.base_version}, but the run is at "
                f"version {state.version} now (another patch was applied since): write it "
                "again against the current definition"
            ],
            stale=True,
        )
    if len(state.patches) >= limits.max_patches:
        return Refused(
            [
                f"the run has had {len(state.patches)} patches applied, the most one run may "
                "have: publish a new version of the workflow instead"
            ]
        )
    ops = p.patch
    if not ops:
        return Refused(["the patch has no operations"])
    if len(ops) > limits.max_ops:
        return Refused(
            [
                f"the patch has {len(ops)} operations; one patch may have at most "
                f"{limits.max_ops}: split it into smaller patches"
            ]
        )
    current = state.current_definition()
    patched, reason = _apply(current, ops)
    if reason is not None:
        return Refused([reason])
    try:
        definition = WorkflowDefinition.model_validate(patched)
    except ValidationError as e:
        return Refused([_shape_reason(err) for err in e.errors()])
    new = definition.canonical()
    old = WorkflowDefinition.model_validate(current).canonical()
    diff = PatchDiff(old, new)
    # What may not change comes first: it is what an author most needs to hear.
    reasons = [
        *_frozen_reasons(state, diff),
        *agent_policy_reasons(state, submitted, diff),
        *_agent_limit_reasons(state, old, new, diff),
        *validate_graph(definition, state.ir.node_types),
    ]
    if len(definition.nodes) > limits.max_nodes:
        reasons.append(
            f"the patched workflow has {len(definition.nodes)} nodes; a run may have at most "
            f"{limits.max_nodes}"
        )
    if not reasons:
        reasons = [*_root_reasons(state, diff), *_spawn_reasons(state, submitted, diff, limits)]
    if reasons:
        return Refused(reasons)
    if new == old:
        return Refused([f"the patch changes nothing: the definition stays version {state.version}"])
    ir = compile_workflow(definition, state.ir.node_types)
    size = len(canonical_json(new)) + len(canonical_json(ir.model_dump(mode="json")))
    if size > MAX_VERSION_BYTES:
        return Refused(
            [
                f"the patched workflow would take {size} bytes with its compiled form, and a "
                f"version of a run may take at most {MAX_VERSION_BYTES}: make configs smaller"
            ]
        )
    return Accepted(
        definition=new,
        ir=ir,
        added=diff.added,
        removed=diff.removed,
        changed=diff.changed,
        agent_spawns=_spawns(submitted, diff),
    )


def _apply(document: dict[str, Any], ops: list[Any]) -> tuple[Any, str | None]:
    """``document`` with ``ops`` applied (a copy), or the first operation that fails, why."""
    doc: Any = copy.deepcopy(document)
    for i, op in enumerate(ops):
        where = f"operation {i}"
        if isinstance(op, dict):
            where += f" ({op.get('op')!s} {op.get('path')!s})"
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed as e:
            return None, f"{where}: the test failed: {e}"
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
            return None, f"{where}: {e}; the patch is not applied"
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            return None, f"{where} is not a valid RFC 6902 operation ({e})"
    return doc, None


def _shape_reason(err: Any) -> str:
    path = "/" + "/".join(str(part) for part in err["loc"])
    return f"the patched definition is not valid at {path}: {err['msg']}"


def _where(state: RunState, node_id: str) -> str | None:
    """How far a node has got, in words, if it is past changing (None while PENDING)."""
    node = state.nodes.get(node_id)
    if node is None or node.status is NodeStatus.PENDING:
        return None
    status = node.status
    if node.terminal:
        return f"has finished ({status.value})"
    if status is NodeStatus.SCHEDULED:
        return "is scheduled already (SCHEDULED)"
    if status is NodeStatus.WAITING:
        return "has started and waits for a decision (WAITING)"
    return f"has started ({status.value})"


def _frozen_reasons(state: RunState, diff: PatchDiff) -> list[str]:
    reasons = []
    for node_id in diff.removed:
        where = _where(state, node_id)
        if where:
            reasons.append(f"node {node_id!r} cannot be removed: it {where}")
    for node_id in diff.changed:
        where = _where(state, node_id)
        if where:
            reasons.append(
                f"node {node_id!r} cannot be changed: it {where}; only nodes not yet "
                "scheduled can change"
            )
    for edge in diff.edges_removed():
        for end in dict.fromkeys(edge[:2]):
            where = _where(state, end) if end in diff.new_nodes else None
            if where:
                reasons.append(
                    f"edge {edge_text(edge)} cannot be removed or changed: node {end!r} {where}"
                )
                break
    for edge in diff.edges_added():
        where = _where(state, edge[1])
        if where:
            reasons.append(
                f"edge {edge_text(edge)} cannot be added: node {edge[1]!r} {where}, so what "
                "leads to it is settled"
            )
    return reasons


def _agent_limit_reasons(
    state: RunState, old: dict[str, Any], new: dict[str, Any], diff: PatchDiff
) -> list[str]:
    """A patch may not move the run's budget (a model steered by what it read would raise
    its own), nor bring in a model the tenant does not allow."""
    reasons = []
    if old.get("budget") != new.get("budget"):
        reasons.append(
            "the run's budget cannot be changed by a patch: a person raises it by approving "
            "the agent node that waits on it"
        )
    allowed = state.agent_limits.allowed_models if state.agent_limits is not None else None
    touched = [diff.new_nodes[n] for n in (*diff.added, *diff.changed)]
    return reasons + model_refusals(touched, allowed)


def _root_reasons(state: RunState, diff: PatchDiff) -> list[str]:
    """Nodes yet to start that the patch leaves with nothing leading to them."""
    new_roots = diff.roots("new") - diff.roots("old")
    orphans = [n for n in diff.new_nodes if n in new_roots and _where(state, n) is None]
    return [
        f"node {node_id!r} has no incoming edge, so nothing would ever start it: add an edge "
        "to it from a node of the run"
        for node_id in orphans
    ]


def _spawns(submitted: PatchSubmitted, diff: PatchDiff) -> list[str]:
    """Agent nodes this patch adds (or makes of a pending node) on an agent's proposal."""
    if not is_agent_patch(submitted):
        return []
    return [
        node_id
        for node_id in (*diff.added, *diff.changed)
        if diff.new_nodes[node_id]["type"] == "agent"
        and (node_id not in diff.old_nodes or diff.old_nodes[node_id]["type"] != "agent")
    ]


def _spawn_reasons(
    state: RunState, submitted: PatchSubmitted, diff: PatchDiff, limits: PatchLimits
) -> list[str]:
    new = [n for n in _spawns(submitted, diff) if n not in state.agent_spawns]
    had = len(state.agent_spawns)
    if not new or had + len(new) <= limits.agent_spawn_limit:
        return []
    return [
        f"agents may add at most {limits.agent_spawn_limit} agent nodes to one run and have "
        f"added {had}; this patch would add {len(new)} more ({', '.join(new)}): do the work "
        "in this node, or finish and leave the rest to a person"
    ]
