"""How long steps tell the user what they are doing.

The stack code calls ``progress.step("building MinIO …")`` as a context manager; the CLI passes
a reporter that shows a rich spinner, tests pass nothing (steps go to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

log = logging.getLogger("aob.stack")


class Progress(Protocol):
    def step(self, message: str) -> AbstractContextManager[None]: ...

    def info(self, message: str) -> None: ...


class LogProgress:
    """Default reporter: plain log lines."""

    @contextmanager
    def step(self, message: str) -> Iterator[None]:
        log.info("%s", message)
        yield

    def info(self, message: str) -> None:
        log.info("%s", message)
