"""Scripts: which replies the scripted model gives, and the requests it has answered.

A script is ``{"match": str, "replies": [reply, ...]}``. A request is answered by the first
script (in the order they were added) whose ``match`` occurs in the text of any of its
messages and that still has replies; each request consumes that script's next reply. A reply
is one of::

    {"content": "text"}                                          a plain answer
    {"tool_calls": [{"name": "finish", "arguments": {...}}]}      tool calls
    {"status": 429, "headers": {"retry-after": "0.2"},
     "error": {"message": "...", "type": "...", "code": "..."}}  an error answer

and ``content``/``tool_calls`` replies may carry ``usage`` (any of ``prompt_tokens``,
``completion_tokens``, ``total_tokens``, ``cached_tokens``) instead of the counted one.

A script with ``"by_turn": true`` is not used up: a request gets the reply at the index of
its conversation's turn (how many assistant messages it holds), as long as there is one. A
conversation started again (an agent's attempt retried, its worker killed midway) gets the
same replies again, so a test can script "call tool X with Y, then finish" and have it hold
whichever attempt asks::

    {"match": "token", "by_turn": true, "replies": [
        {"tool_calls": [{"name": "http", "arguments": {"url": "http://…"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"output": "done"}}]}]}

With no script to answer, the default reply calls ``finish`` (when the request offers it)
with a short, plainly marked summary of the prompt, so any workflow runs. Usage is counted
in words, deterministically: prompt tokens are the words of every message, cached tokens
those of a system message this server has seen before (as a provider caching the prefix
would), completion tokens the words of the reply.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCRIPTED_MARK = "(scripted reply)"


class ToolCallReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None


class UsageOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int | None = Field(None, ge=0)
    completion_tokens: int | None = Field(None, ge=0)
    total_tokens: int | None = Field(None, ge=0)
    cached_tokens: int | None = Field(None, ge=0)


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str | None = None
    tool_calls: list[ToolCallReply] | None = None
    status: int | None = Field(None, ge=400, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    error: ErrorBody | None = None
    usage: UsageOverride | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Reply:
        if self.status is None and self.content is None and not self.tool_calls:
            raise ValueError("a reply needs content, tool_calls, or a status (an error)")
        if self.status is not None and (self.content is not None or self.tool_calls):
            raise ValueError("an error reply has no content or tool_calls")
        return self

    @property
    def kind(self) -> Literal["error", "answer"]:
        return "error" if self.status is not None else "answer"


class ScriptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: str = Field(min_length=1)
    replies: list[Reply] = Field(min_length=1)
    by_turn: bool = False


@dataclass
class Script:
    id: int
    match: str
    replies: list[Reply]
    used: int = 0
    by_turn: bool = False

    @property
    def exhausted(self) -> bool:
        return not self.by_turn and self.used >= len(self.replies)

    def reply_for(self, turn: int) -> Reply | None:
        """The reply for a request at ``turn`` (its assistant messages), None if none."""
        if self.by_turn:
            return self.replies[turn] if turn < len(self.replies) else None
        return None if self.exhausted else self.replies[self.used]


@dataclass
class Recorded:
    """One request as received, and what answered it (a script id, or None: the default)."""

    body: dict[str, Any]
    script: int | None
    status: int


def message_text(message: Any) -> str:
    """All the text of one message: its content (string or parts) and its tool calls."""
    if not isinstance(message, dict):
        return ""
    parts: list[str] = []
    content = message.get("content")
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        parts += [p.get("text", "") for p in content if isinstance(p, dict)]
    for call in message.get("tool_calls") or []:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        parts.append(f"{function.get('name', '')} {function.get('arguments', '')}")
    return "\n".join(parts)


def words(text: str) -> int:
    return len(text.split())


@dataclass
class ScriptBook:
    """The registered scripts and the requests answered, safe to share between threads."""

    scripts: list[Script] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    seen_systems: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, script: ScriptIn) -> Script:
        with self._lock:
            added = Script(
                len(self.scripts) + 1, script.match, list(script.replies), by_turn=script.by_turn
            )
            self.scripts.append(added)
            return added

    def clear(self) -> None:
        with self._lock:
            self.scripts.clear()
            self.requests.clear()
            self.seen_systems.clear()

    def take(self, body: dict[str, Any]) -> tuple[Script | None, Reply | None, int]:
        """The script answering ``body`` and its next reply (None, None: the default one),
        and the request's cached-prefix tokens; the request is recorded."""
        messages = body.get("messages") or []
        texts = [message_text(m) for m in messages]
        turn = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
        with self._lock:
            script = next(
                (
                    s
                    for s in self.scripts
                    if s.reply_for(turn) is not None and any(s.match in t for t in texts)
                ),
                None,
            )
            reply = None
            if script is not None:
                reply = script.reply_for(turn)
                script.used += 1
            cached = 0
            first = messages[0] if messages else None
            if isinstance(first, dict) and first.get("role") == "system":
                system = texts[0]
                if system in self.seen_systems:
                    cached = words(system)
                self.seen_systems.add(system)
            status = reply.status if reply is not None and reply.status else 200
            self.requests.append(Recorded(body, script.id if script else None, status))
            return script, reply, cached

    def recorded(self, match: str | None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if match is None
                or any(match in message_text(m) for m in r.body.get("messages") or [])
            ]


def default_reply(body: dict[str, Any]) -> Reply:
    """A reply for a request no script answers: finish with a summary of the prompt (or a
    plain answer when no finish tool is offered). Marked as scripted."""
    messages = body.get("messages") or []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    prompt = message_text(users[-1]) if users else ""
    first_line = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
    if len(first_line) > 160:
        first_line = first_line[:159] + "…"
    summary = (
        f"{SCRIPTED_MARK} AOB's local scripted model answered, not an LLM. The prompt, "
        f"{words(prompt)} words, began: {first_line}"
    )
    offered = {
        t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)
    }
    if "finish" in offered:
        return Reply(tool_calls=[ToolCallReply(name="finish", arguments={"output": summary})])
    return Reply(content=summary)


def arguments_json(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)
