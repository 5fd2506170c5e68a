"""Errors of the projections.

    ProjectionError
    └── SchemaNameInvalid   a --schema name that is not a plain SQL identifier

Undecodable records are not errors here: they are noted in ``projection_poison`` and skipped.
Database and Kafka faults are retried by the runner from the last committed batch.
"""

from __future__ import annotations


class ProjectionError(Exception):
    """Root of every error raised by ``projections``."""


class SchemaNameInvalid(ProjectionError):
    pass
