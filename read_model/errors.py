"""Errors of the read model.

ReadModelError
└── SchemaNameInvalid   a schema name (``--schema``, a rebuild's) that is not a plain,
                        lower-case SQL identifier
"""

from __future__ import annotations


class ReadModelError(Exception):
    """Root of every error raised by ``read_model``."""


class SchemaNameInvalid(ReadModelError):
    pass
