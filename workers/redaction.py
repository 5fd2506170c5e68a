"""Masking the secrets an attempt used in everything that attempt reports.

A secret's value goes where its template puts it (a header, a prompt) and nowhere else: the
target may echo it back, a model may repeat it, an exception may quote it. Everything the
attempt reports passes through one ``Redactor`` in the executor (``workers.execute``): the
output before it is encoded (so the CAS never holds it either), every event the attempt
appends (reasons, an agent's events, a hitl prompt, a patch), and the log lines about it.

Log lines are masked by ``MaskingFilter`` on the worker's log handlers: the executor makes the
attempt's redactor current (``masking``, a context variable, so each task has its own), and
every record logged while the attempt runs, by any module (the agent's retry layer quoting
a provider's error, say), passes it, traceback included.

Each occurrence of a value becomes ``[secret:NAME]``, in strings at any depth of a JSON value,
keys included. The value is also masked as JSON escapes it and as a URL encodes it, the two
spellings in which it most often comes back. Longer values are replaced first, so that a
secret that holds another is masked whole.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote

from schemas.envelope import Event


class Redactor:
    """Masks the values of ``secrets`` (name -> value)."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        spellings: dict[str, str] = {}
        for name, value in (secrets or {}).items():
            if not value:
                continue
            for spelled in (value, json.dumps(value)[1:-1], quote(value, safe="")):
                spellings.setdefault(spelled, name)
        self._spellings = sorted(spellings.items(), key=lambda item: -len(item[0]))

    def __bool__(self) -> bool:
        return bool(self._spellings)

    def text(self, text: str) -> str:
        for value, name in self._spellings:
            if value in text:
                text = text.replace(value, f"[secret:{name}]")
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every string in it masked (dicts' keys too, lists, tuples)."""
        if not self._spellings:
            return value
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        # Values reaching here passed the value rules' depth limit (schemas.values) or come
        # from our own models: recursion is bounded.
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        return value

    def event(self, event: Event) -> Event:
        """``event`` with its payload masked (the envelope carries ids, never a value)."""
        if not self._spellings:
            return event
        dumped = event.payload.model_dump(by_alias=True)
        masked = self._walk(dumped)
        if masked == dumped:
            return event
        payload = type(event.payload).model_validate(masked)
        return event.model_copy(update={"payload": payload})


_CURRENT: ContextVar[Redactor | None] = ContextVar("aob_attempt_redactor", default=None)


@contextmanager
def masking(redactor: Redactor) -> Iterator[None]:
    """Make ``redactor`` the one ``MaskingFilter`` applies to what this task logs."""
    token = _CURRENT.set(redactor)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class MaskingFilter(logging.Filter):
    """Masks a record logged during an attempt that read secrets (message and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = _CURRENT.get()
        if not redactor:
            return True
        record.msg, record.args = redactor.text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
        return True


def mask_logs(logger: logging.Logger | None = None) -> None:
    """Add ``MaskingFilter`` to every handler of ``logger`` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
