"""What a patch changes in a run's definition, by node and by edge.

Shared by the rules a patch is judged by (``run_model.patching``) and the policy for agents'
patches (``run_model.agent_policy``), so that both read one account of the change.
"""

from __future__ import annotations

from typing import Any

Edge = tuple[str, str, str | None]


class PatchDiff:
    """The canonical definitions before and after a patch, compared."""

    def __init__(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.old_nodes: dict[str, dict[str, Any]] = {n["id"]: n for n in old["nodes"]}
        self.new_nodes: dict[str, dict[str, Any]] = {n["id"]: n for n in new["nodes"]}
        self.old_edges = edges_of(old)
        self.new_edges = edges_of(new)
        self.added = [i for i in self.new_nodes if i not in self.old_nodes]
        self.removed = [i for i in self.old_nodes if i not in self.new_nodes]
        self.changed = [
            i for i, n in self.new_nodes.items() if i in self.old_nodes and self.old_nodes[i] != n
        ]

    def roots(self, which: str) -> set[str]:
        nodes, edges = (
            (self.old_nodes, self.old_edges) if which == "old" else (self.new_nodes, self.new_edges)
        )
        return set(nodes) - {to for _, to, _ in edges}

    def edges_removed(self) -> list[Edge]:
        """Edges of the old definition that the new one does not have (a changed guard is
        the old edge removed and a new one added)."""
        kept = set(self.new_edges)
        return [e for e in self.old_edges if e not in kept]

    def edges_added(self) -> list[Edge]:
        before = set(self.old_edges)
        return [e for e in self.new_edges if e not in before]


def edges_of(definition: dict[str, Any]) -> list[Edge]:
    return [(e["from"], e["to"], e.get("when")) for e in definition.get("edges", [])]


def edge_text(edge: Edge) -> str:
    source, target, when = edge
    return f"{source} -> {target}" + (f" (when {when})" if when is not None else "")
