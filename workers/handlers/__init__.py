"""What a handler is (``workers.handlers.base``) and the built-in handlers' code.

The registry of the built-in types (node type -> handler) is ``workers.builtins``; its
``HANDLERS`` and ``open_handlers`` are also reachable from here. They are looked up when
first asked for: the simple built-ins are declared with the worker SDK (``aob``), which
itself imports ``workers.handlers.base``, so importing them here, with this package, would
import the SDK half-way through its own import.
"""

from __future__ import annotations

from typing import Any

from workers.handlers.base import WAITING, Handler, Job


def __getattr__(name: str) -> Any:
    if name in {"HANDLERS", "open_handlers"}:
        from workers import builtins

        return getattr(builtins, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["HANDLERS", "WAITING", "Handler", "Job", "open_handlers"]
