"""The ``aob`` command line.

Commands live in modules of this package: any module here with a ``register(app)`` function
is picked up by :mod:`cli.main` (e.g. ``cli/stack_commands.py`` adds ``up``, ``down`` and
``status``). Raise :class:`CLIError` for anything the user must fix: it is printed as one line
and the command exits 1, never with a traceback.
"""

from __future__ import annotations


class CLIError(Exception):
    """An error for the person at the terminal: what was wrong and what to do."""
