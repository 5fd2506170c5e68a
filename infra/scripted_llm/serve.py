"""Running the scripted model: in this event loop (tests), or as a process (``aob up``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn

from infra.scripted_llm.app import create_app
from infra.scripted_llm.scripts import ScriptBook

HOST = "127.0.0.1"  # no authentication: never listen beyond the loopback interface


@dataclass(frozen=True)
class Running:
    url: str  # http://127.0.0.1:<port>
    book: ScriptBook

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be to talk to it."""
        return f"{self.url}/v1"


@contextlib.asynccontextmanager
async def running(port: int = 0) -> AsyncIterator[Running]:
    """The scripted model served in the current event loop (port 0: any free port)."""
    book = ScriptBook()
    config = uvicorn.Config(
        create_app(book), host=HOST, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                await task  # raises what stopped it
                raise RuntimeError("the scripted model stopped during start-up")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield Running(f"http://{HOST}:{bound}", book)
    finally:
        server.should_exit = True
        await task


def serve_forever(port: int) -> None:
    uvicorn.run(create_app(), host=HOST, port=port, log_level="info")
