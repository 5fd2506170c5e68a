"""The tools an agent may call, and what each answers.

``finish(output)`` is always offered: it ends the node with ``output``. ``patch_workflow(patch,
reason)`` is offered only to nodes that list it in ``config.tools``: an agent's tools are no
more powerful than its node allows (fetched content may try to steer the model). Patching is
not wired to the coordinator yet, so the tool answers that it is unavailable, in words the
model can act on. Definitions are listed in a fixed order so the request prefix is stable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

FINISH = "finish"
PATCH_WORKFLOW = "patch_workflow"
OPTIONAL_TOOLS: tuple[str, ...] = (PATCH_WORKFLOW,)

PATCH_UNAVAILABLE = (
    "patch_workflow is not available yet: this AOB cannot change a running workflow, so the "
    "patch was not applied. Carry on without it and call finish with your result."
)

_DEFINITIONS: dict[str, dict[str, Any]] = {
    FINISH: {
        "type": "function",
        "function": {
            "name": FINISH,
            "description": "End your work. `output` becomes this node's result: a string, "
            "or any JSON value when structured data was asked for.",
            "parameters": {
                "type": "object",
                "properties": {"output": {"description": "The node's result."}},
                "required": ["output"],
            },
        },
    },
    PATCH_WORKFLOW: {
        "type": "function",
        "function": {
            "name": PATCH_WORKFLOW,
            "description": "Propose a change to this run's workflow definition as a JSON "
            "Patch (RFC 6902). The answer says whether it was accepted, with the reasons "
            "when it was not.",
            "parameters": {
                "type": "object",
                "properties": {
                    "patch": {
                        "type": "array",
                        "description": "JSON Patch operations on the run's definition.",
                        "items": {"type": "object"},
                    },
                    "reason": {"type": "string", "description": "Why the change is needed."},
                },
                "required": ["patch", "reason"],
            },
        },
    },
}


def definitions(allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """The tool definitions for a node allowing ``allowed``: finish first, then the rest in
    a fixed order."""
    return [_DEFINITIONS[FINISH]] + [_DEFINITIONS[t] for t in OPTIONAL_TOOLS if t in allowed]


@dataclass(frozen=True)
class ToolAnswer:
    """What one tool call did: ``finished`` with ``output``, or ``reply`` for the model."""

    reply: str = ""
    finished: bool = False
    output: Any = None


def answer(name: str, arguments: str, allowed: tuple[str, ...]) -> ToolAnswer:
    """Run the tool call ``name(arguments)`` (arguments as the model sent them, JSON text)."""
    if name != FINISH and name not in allowed:
        offered = ", ".join([FINISH, *allowed])
        return ToolAnswer(reply=f"error: there is no tool {name!r} here (tools: {offered})")
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError as e:
        return ToolAnswer(reply=f"error: the arguments of {name} are not valid JSON ({e})")
    if not isinstance(args, dict):
        return ToolAnswer(reply=f"error: the arguments of {name} must be a JSON object")
    if name == FINISH:
        if "output" not in args:
            return ToolAnswer(reply="error: finish needs an 'output' argument")
        return ToolAnswer(finished=True, output=args["output"])
    return ToolAnswer(reply=PATCH_UNAVAILABLE)
