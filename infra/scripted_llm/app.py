"""The scripted model's HTTP app: OpenAI's Chat Completions shape, answers from scripts.

    POST /v1/chat/completions   answered from the scripts (see ``scripts``)
    GET  /v1/models             the one model it claims to be, and any asked for
    GET  /healthz
    POST /scripts               register a script ``{match, replies}``; answers ``{id}``
    DELETE /scripts             forget every script and recorded request
    GET  /requests?match=...    the requests answered (bodies), optionally only those
                                with ``match`` in a message

It has no authentication: it listens on the loopback interface only.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from infra.scripted_llm.scripts import (
    Reply,
    ScriptBook,
    ScriptIn,
    arguments_json,
    default_reply,
    message_text,
    words,
)

MODEL_NAME = "aob-scripted"


def _error(status: int, message: str, type_: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


def create_app(book: ScriptBook | None = None) -> FastAPI:
    book = book or ScriptBook()
    app = FastAPI(title="AOB scripted model", docs_url=None, redoc_url=None)
    app.state.book = book
    counter = itertools.count(1)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "scripts": len(book.scripts), "requests": len(book.requests)}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "aob"}],
        }

    @app.post("/scripts", status_code=201)
    async def add_script(script: ScriptIn) -> dict[str, Any]:
        return {"id": book.add(script).id}

    @app.delete("/scripts")
    async def clear() -> dict[str, Any]:
        book.clear()
        return {"ok": True}

    @app.get("/requests")
    async def requests(match: str | None = None) -> dict[str, Any]:
        return {
            "requests": [
                {"script": r.script, "status": r.status, "body": r.body}
                for r in book.recorded(match)
            ]
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is required and must be a list")
        if not body["messages"]:
            return _error(400, "'messages' must not be empty")
        _, reply, cached = book.take(body)
        if reply is None:
            reply = default_reply(body)
        if reply.status is not None:
            error = (
                reply.error.model_dump()
                if reply.error
                else {
                    "message": f"scripted error {reply.status}",
                    "type": "scripted_error",
                    "param": None,
                    "code": None,
                }
            )
            return JSONResponse({"error": error}, status_code=reply.status, headers=reply.headers)
        n = next(counter)
        return JSONResponse(completion(body, reply, n, cached), headers=reply.headers)

    return app


def completion(body: dict[str, Any], reply: Reply, n: int, cached: int) -> dict[str, Any]:
    """A Chat Completions answer carrying ``reply``."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    completion_words = words(reply.content or "")
    finish_reason = "stop"
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{n}_{i}",
                "type": "function",
                "function": {"name": c.name, "arguments": arguments_json(c.arguments)},
            }
            for i, c in enumerate(reply.tool_calls, 1)
        ]
        completion_words += sum(
            words(f"{c.name} {arguments_json(c.arguments)}") for c in reply.tool_calls
        )
        finish_reason = "tool_calls"
    prompt_words = sum(words(message_text(m)) for m in body["messages"])
    usage = {
        "prompt_tokens": prompt_words,
        "completion_tokens": completion_words,
        "cached_tokens": min(cached, prompt_words),
    }
    if reply.usage is not None:
        usage.update(reply.usage.model_dump(exclude_none=True))
    total = reply.usage.total_tokens if reply.usage is not None else None
    if total is None:
        total = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": f"chatcmpl-scripted-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or MODEL_NAME,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": total,
            "prompt_tokens_details": {"cached_tokens": usage["cached_tokens"]},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": None,
    }
