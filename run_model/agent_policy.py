"""What an agent's patch may do to its run (DESIGN.md, Patching; FIELD_NOTES, Agents).

A model steered by what it read (a fetched page, an upstream output) must not be able to turn
what a person built against them: re-point a pending http node, whose headers go along with
it; let a node run that an approval or a condition would have skipped; hand ``patch_workflow``
to another agent. So a patch whose actor is an agent is held to these rules, on top of the
ones every patch obeys. A person's patch is not: people keep every power they had.

An agent *owns* the nodes that its own applied patches added (or last changed). Its identity
is the agent node's id in the run, across its attempts: an attempt after a failure is the
same node, with the same prompt and the same tools, finishing the same work, so it may correct
what its earlier attempt added; another agent node is another prompt, maybe written by
someone else, so it owns nothing of this one's. (A fork carries the source's history, so the
fork's node owns what the source's node added before the fork point.)

The rules, each named in the reason that a refusal gives, so a model can act on it:

- ``agent-may-not-change-others-nodes``: no part (type, config, retry, timeout_s,
  concurrency, rate_limit) of a node the agent does not own changes. The whole node, not
  only ``config``: a type, a retry count, a time limit or a lifted concurrency bound changes
  what a person's node does as surely as its URL.
- ``agent-may-not-remove-others-nodes``: nor is such a node removed.
- ``agent-may-not-reroute-others-nodes``: no edge into a node the agent does not own is added,
  removed or given another guard. What leads to a node decides whether it runs: a node runs
  once its predecessors have finished if any incoming edge is live (``run_model.edges``), so
  an edge added from the agent's own node into ``pay`` would run ``pay`` even after its
  approval was rejected, and removing ``approve -> pay`` would skip the approval. Edges into
  the agent's own nodes, from any node, are the agent's to lay: that is how it adds work.
- ``agent-may-not-give-tools``: no node gets ``tools`` (an added node has none, a kept node's
  do not change), not even a node the agent owns. The only tool a node can be given is
  ``patch_workflow`` itself, so an allowlist would be empty: none it is.

- ``agent-may-not-read-secrets``: no node the agent adds or changes reads a secret
  (``{{ secrets.NAME }}``). A worker resolves a secret for any node of the tenant's run, so
  an added http node reading one could send it anywhere public; the secrets a run uses are
  the ones its people wrote into it.

Adding nodes of any type stays allowed (the issue's default): an added http node holds only
what the agent itself wrote, never a person's credentials or the tenant's secrets, and the
spawn limit bounds added agents.
"""

from __future__ import annotations

from typing import Any

from run_model.patch_diff import Edge, PatchDiff, edge_text
from run_model.state import RunState
from schemas.events import PatchSubmitted
from schemas.secret_refs import SecretReferenceError, secret_references

CHANGE_OTHERS = "agent-may-not-change-others-nodes"
REMOVE_OTHERS = "agent-may-not-remove-others-nodes"
REROUTE_OTHERS = "agent-may-not-reroute-others-nodes"
GIVE_TOOLS = "agent-may-not-give-tools"
READ_SECRETS = "agent-may-not-read-secrets"
RULES: tuple[str, ...] = (CHANGE_OTHERS, REMOVE_OTHERS, REROUTE_OTHERS, GIVE_TOOLS, READ_SECRETS)

# A node's parts, as a definition names them, in the order a reason lists them.
_NODE_PARTS = ("type", "config", "retry", "timeout_s", "concurrency", "rate_limit")


def is_agent_patch(submitted: PatchSubmitted) -> bool:
    return submitted.actor.kind == "agent"


def agent_proposer(submitted: PatchSubmitted) -> str | None:
    """The agent node that proposed ``submitted`` (None for a person's patch): the node id
    the worker names, or the node part of the actor's ``<run>/<node>`` id."""
    if not is_agent_patch(submitted):
        return None
    return submitted.payload.node_id or submitted.actor.id.rpartition("/")[2]


def agent_policy_reasons(state: RunState, submitted: PatchSubmitted, diff: PatchDiff) -> list[str]:
    """Every rule of the policy that ``submitted`` breaks (none for a person's patch)."""
    proposer = agent_proposer(submitted)
    if proposer is None:
        return []
    own = {n for n, author in state.authored_by.items() if author == proposer}
    own.update(diff.added)
    reasons = [
        *(_removed(node_id) for node_id in diff.removed if node_id not in own),
        *(_changed(diff, node_id) for node_id in diff.changed if node_id not in own),
    ]
    rerouted = [
        *(("add", e) for e in diff.edges_added() if e[1] not in own),
        # An edge whose target goes too is told by that node's own reason.
        *(
            ("remove", e)
            for e in diff.edges_removed()
            if e[1] in diff.new_nodes and e[1] not in own
        ),
    ]
    reasons += [_rerouted(verb, edge) for verb, edge in rerouted]
    for node_id in [*diff.added, *diff.changed]:
        tools = diff.new_nodes[node_id].get("config", {}).get("tools")
        before = diff.old_nodes.get(node_id, {}).get("config", {}).get("tools")
        if tools not in (None, []) and tools != before:
            reasons.append(_tools(node_id, tools))
        if _reads_secrets(diff.new_nodes[node_id]):
            reasons.append(_secrets(node_id))
    return reasons


def _reads_secrets(node: dict[str, Any]) -> bool:
    try:
        return bool(secret_references(node.get("config")))
    except SecretReferenceError:  # refused by the graph check too; read as a reference
        return True


def _removed(node_id: str) -> str:
    return (
        f"agent patches may not remove node {node_id!r}, which the agent did not add "
        f"(rule: {REMOVE_OTHERS}): leave it in place; add nodes of your own instead"
    )


def _changed(diff: PatchDiff, node_id: str) -> str:
    old, new = diff.old_nodes[node_id], diff.new_nodes[node_id]
    parts = [p for p in _NODE_PARTS if old.get(p) != new.get(p)]
    return (
        f"agent patches may not change the {' and '.join(parts)} of node {node_id!r}, which "
        f"the agent did not add (rule: {CHANGE_OTHERS}): leave it as it is; to do something "
        "else, add a node of your own"
    )


def _rerouted(verb: str, edge: Edge) -> str:
    action = "add" if verb == "add" else "remove or change"
    return (
        f"agent patches may not {action} the edge {edge_text(edge)}: node {edge[1]!r} was not "
        f"added by the agent, and what leads to it decides whether it runs (rule: "
        f"{REROUTE_OTHERS}); edges may lead only into nodes the agent adds"
    )


def _secrets(node_id: str) -> str:
    return (
        f"agent patches may not make a node read a secret: node {node_id!r} refers to "
        f"'secrets' (rule: {READ_SECRETS}): leave secrets out; if the work needs one, ask a "
        "person to add the node"
    )


def _tools(node_id: str, tools: Any) -> str:
    return (
        f"agent patches may not give tools to a node: node {node_id!r} would have tools "
        f"{tools!r} (rule: {GIVE_TOOLS}): leave 'tools' out of its config"
    )
