"""The bench's load: run submissions to the command API over one aiohttp session.

A submission refused with 429 (a limit holds it back: the command API's requests a second
per process, or the tenant's admission) is sent again after the ``Retry-After`` the API
gave, as a client should: a burst larger than the API's allowance then goes at the rate the
API allows instead of failing. How many were held back is counted (``throttled``).

The bench measures the stack on the machine that runs it, so what it spends itself is taken
from the stack. The CLI's own client (httpx, ``cli.api_client``) spent 1.3 to 1.5 ms of CPU
per submission, 16 in flight; aiohttp spends 0.27 to 0.33 ms (1,000 submissions, the same
sitting). On a chain3 burst that was a tenth of the machine.
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any

import aiohttp

from cli import CLIError
from cli.api_client import problem_text

TIMEOUT_S = 30.0  # for one submission
THROTTLED_FOR_S = 120.0  # the longest one submission waits out 429s before the bench stops


class Submitter:
    """Submits runs as ``POST /v1/runs`` with ``api_key``, at most ``concurrency`` at once."""

    def __init__(self, command_api_url: str, api_key: str, concurrency: int) -> None:
        self._url = command_api_url.rstrip("/") + "/v1/runs"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self.throttled = 0  # 429 answers waited out

    async def __aenter__(self) -> Submitter:
        connector = aiohttp.TCPConnector(limit=self._concurrency)
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def submit(self, body: dict[str, Any]) -> str:
        """The run id of the submitted run; a CLIError with the API's reason if refused (a
        429 only once it has been waited out for ``THROTTLED_FOR_S``)."""
        waited = 0.0
        while True:
            status, text, retry_after = await self._post(body)
            if status == 429 and waited < THROTTLED_FOR_S:
                self.throttled += 1
                await asyncio.sleep(retry_after)
                waited += retry_after
                continue
            if status != 202:
                raise CLIError(problem_text(status, text))
            run_id: str = json.loads(text)["run_id"]
            return run_id

    async def _post(self, body: dict[str, Any]) -> tuple[int, str, float]:
        """The status and body of one ``POST /v1/runs``, and its ``Retry-After`` in seconds
        (1 if it has none, at least 0.05 and at most 5)."""
        assert self._session is not None, "use Submitter in `async with`"
        try:
            async with self._session.post(self._url, json=body) as response:
                text = await response.text()
                retry_after = _seconds(response.headers.get("Retry-After"))
                return response.status, text, retry_after
        except aiohttp.ClientConnectionError as e:
            raise CLIError(f"the command API is not reachable ({e}); run `aob up`") from e
        except TimeoutError as e:
            raise CLIError(f"the command API did not answer within {TIMEOUT_S:g} s") from e


def _seconds(retry_after: str | None) -> float:
    try:
        seconds = float(retry_after) if retry_after is not None else 1.0
    except ValueError:  # an HTTP date: not what the command API sends
        seconds = 1.0
    return min(max(seconds, 0.05), 5.0)
