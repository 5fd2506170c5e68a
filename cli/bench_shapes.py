"""The workflows ``aob bench`` drives: the no-op shapes that are set beside other engines.

``chain3`` (a → b → c) and ``fanout10`` (1 → 8 in parallel → 1) are the shapes of the
Temporal peer harness, node for activity: every node a ``noop`` that succeeds with ``{}``, so
what is measured is the engine, not the work. ``--shape FILE`` takes any workflow file of the
form ``aob workflows publish`` reads (``{"name", "definition"}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli import CLIError


@dataclass(frozen=True)
class Shape:
    name: str
    definition: dict[str, Any]

    @property
    def nodes_per_run(self) -> int:
        return len(self.definition["nodes"])


def _noop(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "noop"}


def chain3() -> Shape:
    nodes = [_noop(n) for n in ("a", "b", "c")]
    edges = [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}]
    return Shape("bench-chain3", {"nodes": nodes, "edges": edges})


def fanout10() -> Shape:
    middle = [f"m{i}" for i in range(8)]
    nodes = [_noop("first"), *(_noop(m) for m in middle), _noop("last")]
    edges = [{"from": "first", "to": m} for m in middle] + [
        {"from": m, "to": "last"} for m in middle
    ]
    return Shape("bench-fanout10", {"nodes": nodes, "edges": edges})


BUILT_IN = {"chain3": chain3, "fanout10": fanout10}


def load_shape(spec: str) -> Shape:
    """A built-in shape by name, or a workflow file (``{"name", "definition"}``)."""
    if spec in BUILT_IN:
        return BUILT_IN[spec]()
    path = Path(spec)
    if not path.is_file():
        raise CLIError(
            f"--shape {spec!r} is neither a built-in shape ({', '.join(BUILT_IN)}) nor a file"
        )
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CLIError(f"--shape {spec}: not a readable JSON file ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("definition"), dict):
        raise CLIError(f'--shape {spec}: expected {{"name", "definition"}} as for publishing')
    nodes = doc["definition"].get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise CLIError(f"--shape {spec}: the definition has no nodes")
    return Shape(str(doc.get("name") or path.stem), doc["definition"])
