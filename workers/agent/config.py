"""An agent node's config, checked before any model is called.

``prompt`` (template, required), ``system`` (static text appended to AOB's system prefix, not
rendered, so the prefix stays byte-identical across runs), ``model`` (default
``AOB_AGENT_MODEL``), ``max_turns`` (model calls per attempt, 1..32, default 8), ``tools``
(the tools the node allows besides ``finish``, which is always offered; what an entry may
be: ``schemas.agent_tools``),
``max_tokens`` (what each model call may answer with, at most; the tenant's
``agents.max_tokens`` caps it, and applies alone when the node sets none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.agent_tools import ToolEntryError, ToolSet, parse_tools
from schemas.budgets import AgentRunLimits
from workers.agent.tools import OPTIONAL_TOOLS
from workers.errors import ConfigError

DEFAULT_MAX_TURNS = 8
MAX_TURNS_LIMIT = 32
MAX_TOKENS_LIMIT = 1_000_000


@dataclass(frozen=True)
class AgentConfig:
    prompt: str
    system: str
    model: str
    max_turns: int
    tools: tuple[str, ...]
    max_tokens: int | None = None
    # Every tool entry: http, node types, MCP servers too.
    toolset: ToolSet = field(default_factory=ToolSet)

    def max_tokens_for(self, limits: AgentRunLimits | None) -> int | None:
        """What each call of this node asks for at most: its own ``max_tokens`` under the
        run's cap (the tenant's when the run was submitted), or the cap alone."""
        cap = limits.max_tokens if limits is not None else None
        if self.max_tokens is None or cap is None:
            return self.max_tokens if cap is None else cap
        return min(self.max_tokens, cap)


def parse_config(config: dict[str, Any], default_model: str) -> AgentConfig:
    prompt = config.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError("agent config needs a 'prompt' template (a non-empty string)")
    system = config.get("system", "")
    if not isinstance(system, str):
        raise ConfigError("agent config 'system' must be a string")
    model = config.get("model") or default_model
    if not isinstance(model, str):
        raise ConfigError("agent config 'model' must be a string")
    max_turns = config.get("max_turns", DEFAULT_MAX_TURNS)
    if (
        isinstance(max_turns, bool)
        or not isinstance(max_turns, int)
        or not 1 <= max_turns <= MAX_TURNS_LIMIT
    ):
        raise ConfigError(
            f"agent config 'max_turns' must be an integer from 1 to {MAX_TURNS_LIMIT}"
        )
    try:
        toolset = parse_tools(config.get("tools", []))
    except ToolEntryError as e:
        raise ConfigError(f"agent config: {e}") from None
    allowed = tuple(t for t in OPTIONAL_TOOLS if t in toolset.builtins)
    max_tokens = config.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise ConfigError(
            f"agent config 'max_tokens' must be an integer from 1 to {MAX_TOKENS_LIMIT}"
        )
    return AgentConfig(prompt, system, model, max_turns, allowed, max_tokens, toolset)
