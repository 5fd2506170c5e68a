"""``aob``: the entry point. Sub-commands are registered by the modules of the ``cli`` package
(each module with a ``register(app: typer.Typer)`` function, in name order)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

import typer
from rich.console import Console

import cli
from cli import CLIError

_stderr = Console(stderr=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    from infra.stack.errors import StackError

    errors: list[type[BaseException]] = [CLIError, StackError]
    try:
        from schemas.errors import SchemaError

        errors.append(SchemaError)
    except ImportError:  # pragma: no cover - schemas is part of the same distribution
        pass
    return tuple(errors)


class _App(typer.Typer):
    """Typer that turns the project's errors into one line on stderr and exit code 1."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Click's standalone mode handles usage errors and --help; our own errors pass
        # through it and are printed here.
        try:
            return super().__call__(*args, **kwargs)
        except _user_errors() as exc:
            _stderr.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(1)


app = _App(
    name="aob",
    help="AOB: event-sourced workflows of deterministic steps and LLM agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda m: m.name):
        if info.name in {"main"}:
            continue
        module = importlib.import_module(f"cli.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_register_all()

if __name__ == "__main__":  # pragma: no cover
    app()
