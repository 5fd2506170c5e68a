"""A client for the scripted model's admin routes (register scripts, read requests)."""

from __future__ import annotations

from typing import Any

import httpx


class ScriptedLLMClient:
    def __init__(self, url: str, client: httpx.AsyncClient | None = None) -> None:
        self._url = url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=10)

    async def __aenter__(self) -> ScriptedLLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def add_script(
        self, match: str, replies: list[dict[str, Any]], *, by_turn: bool = False
    ) -> int:
        """Register a script; ``by_turn``: replies by the conversation's turn, never used
        up (``infra.scripted_llm.scripts``)."""
        body: dict[str, Any] = {"match": match, "replies": replies}
        if by_turn:
            body["by_turn"] = True
        response = await self._client.post(f"{self._url}/scripts", json=body)
        response.raise_for_status()
        return int(response.json()["id"])

    async def requests(self, match: str | None = None) -> list[dict[str, Any]]:
        """The requests answered, oldest first: ``{script, status, body}`` each."""
        params = {"match": match} if match is not None else {}
        response = await self._client.get(f"{self._url}/requests", params=params)
        response.raise_for_status()
        return list(response.json()["requests"])
