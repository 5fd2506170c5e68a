"""Errors of the local stack. The CLI prints them as one line, never a traceback."""

from __future__ import annotations


class StackError(Exception):
    """Something the user can act on: a missing tool, a port in use, a server that won't start."""


class MissingPrerequisite(StackError):
    """A program the stack needs is not installed and cannot be installed from here."""
