"""The tools an agent may call, and what each answers.

``finish(output)`` is always offered: it ends the node with ``output``. ``patch_workflow(patch,
reason)`` is offered only to nodes that list it in ``config.tools``: an agent's tools are no
more powerful than its node allows (fetched content may try to steer the model). Its
arguments are checked here; submitting the patch and answering with the coordinator's
verdict is ``workers.agent.patching``'s. Definitions are listed in a fixed order and never
vary, so the request prefix is stable.

Arguments are values a model made, so they obey the rules every value in AOB obeys
(``schemas.values``): parsed by ``loads_strict`` (no NUL, no lone surrogate, nesting up to
64, finite 64-bit numbers, string and key sizes, no key given twice). Arguments that break
them are refused to the model with the path and the rule, like arguments that are not JSON
at all: nothing is done, and the model can call again with corrected ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.values import ValueRefused, loads_strict
from schemas.workflow import PATCH_TOOL
from workers.agent.patching import PatchCall

FINISH = "finish"
PATCH_WORKFLOW = PATCH_TOOL  # one name, also read by the coordinator (schemas.workflow)
OPTIONAL_TOOLS: tuple[str, ...] = (PATCH_WORKFLOW,)

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
            "description": "Change this run's workflow while it runs: a JSON Patch (RFC "
            "6902) on the run's definition, the JSON document in your task, of the form "
            '{"nodes": [{"id", "type", "config", "retry"?, "timeout_s"?}, ...], '
            '"edges": [{"from", "to", "when"?}, ...]}. Node types: noop, transform, http, '
            "agent, hitl, condition. Nodes that already ran cannot change and the graph "
            "must stay acyclic. As an agent you may add nodes, and edges into the nodes you "
            "add (from any node); you may not change any part of, or remove, a node you did "
            "not add (rules agent-may-not-change-others-nodes, "
            "agent-may-not-remove-others-nodes), nor add, remove or change an edge into one "
            "(agent-may-not-reroute-others-nodes), nor give any node `tools` "
            "(agent-may-not-give-tools), nor make a node read `secrets` "
            "(agent-may-not-read-secrets). The patch applies whole or not at all: the answer "
            "says 'accepted' with the run's new version and definition, or 'refused' with "
            "the reasons, which name the rule and say what to correct.",
            "parameters": {
                "type": "object",
                "properties": {
                    "patch": {
                        "type": "array",
                        "description": "JSON Patch operations, e.g. "
                        '{"op": "add", "path": "/nodes/-", "value": {...}}.',
                        "items": {"type": "object"},
                    },
                    "reason": {
                        "type": "string",
                        "description": "Why the change is needed (kept with the patch).",
                    },
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
    """What one tool call did: ``finished`` with ``output``; a well-formed ``patch`` to
    submit; or else ``reply`` for the model."""

    reply: str = ""
    finished: bool = False
    output: Any = None
    patch: PatchCall | None = None


def answer(name: str, arguments: str, allowed: tuple[str, ...]) -> ToolAnswer:
    """Run the tool call ``name(arguments)`` (arguments as the model sent them, JSON text)."""
    if name != FINISH and name not in allowed:
        offered = ", ".join([FINISH, *allowed])
        return ToolAnswer(reply=f"error: there is no tool {name!r} here (tools: {offered})")
    try:
        args = loads_strict(arguments or "{}")
    except ValueRefused as e:
        return ToolAnswer(
            reply=f"error: the arguments of {name} were refused, nothing was done: "
            f"{e.path or 'the arguments'}: {e.reason}. Call {name} again with corrected "
            "arguments."
        )
    except ValueError as e:
        return ToolAnswer(reply=f"error: the arguments of {name} are not valid JSON ({e})")
    if not isinstance(args, dict):
        return ToolAnswer(reply=f"error: the arguments of {name} must be a JSON object")
    if name == FINISH:
        if "output" not in args:
            return ToolAnswer(reply="error: finish needs an 'output' argument")
        return ToolAnswer(finished=True, output=args["output"])
    return patch_call(args)


def patch_call(args: dict[str, Any]) -> ToolAnswer:
    """The patch to submit, or the error to tell the model (nothing is submitted then)."""
    patch, reason = args.get("patch"), args.get("reason")
    ops_ok = isinstance(patch, list) and all(isinstance(op, dict) for op in patch)
    reason_ok = isinstance(reason, str) and bool(reason.strip())
    if isinstance(patch, list) and ops_ok and isinstance(reason, str) and reason_ok:
        return ToolAnswer(patch=PatchCall(patch=patch, reason=reason))
    problems = []
    if not isinstance(patch, list):
        problems.append("'patch' must be a list of JSON Patch operations")
    elif not ops_ok:
        problems.append("every item of 'patch' must be an operation object ({\"op\": ...})")
    if not reason_ok:
        problems.append("'reason' must be a non-empty string")
    return ToolAnswer(
        reply=f"error: nothing was submitted: {'; '.join(problems)}. Call patch_workflow "
        "again with corrected arguments, or finish."
    )
