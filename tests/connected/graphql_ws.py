"""A graphql-transport-ws client for tests of live subscriptions over a real WebSocket."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

RECEIVE_GUARD_S = 60  # a hung subscription fails the test instead of hanging it


class Socket:
    """One graphql-transport-ws connection, acknowledged."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def subscribe(
        self, query: str, variables: dict[str, Any], op_id: str | None = None
    ) -> str:
        op_id = op_id or uuid.uuid4().hex
        payload = {"query": query, "variables": variables}
        await self.ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
        return op_id

    async def receive(self) -> dict[str, Any]:
        """The next message other than a ping/pong."""
        while True:
            async with asyncio.timeout(RECEIVE_GUARD_S):
                message: dict[str, Any] = json.loads(await self.ws.recv())
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
            elif message["type"] != "pong":
                return message

    async def until_complete(self, op_id: str) -> list[dict[str, Any]]:
        """Every message of ``op_id`` up to and including its ``complete`` or ``error``."""
        got = []
        while True:
            message = await self.receive()
            assert message.get("id") == op_id, message
            got.append(message)
            if message["type"] in ("complete", "error"):
                return got


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http") + "/graphql"


@asynccontextmanager
async def socket(
    http_url: str, *, header_key: str | None = None, init_key: str | None = None
) -> AsyncIterator[Socket]:
    headers = {"Authorization": f"Bearer {header_key}"} if header_key else {}
    async with connect(
        ws_url(http_url),
        subprotocols=[Subprotocol("graphql-transport-ws")],
        additional_headers=headers,
        open_timeout=10,
    ) as ws:
        init = {"Authorization": f"Bearer {init_key}"} if init_key else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        s = Socket(ws)
        ack = await s.receive()
        assert ack["type"] == "connection_ack", ack
        yield s


async def refusal_of(http_url: str, **keys: str) -> tuple[int, str]:
    """The close code and reason of a connection whose connection_init is refused."""
    with pytest.raises(ConnectionClosed) as closed:
        async with socket(http_url, **keys):
            pass
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason
