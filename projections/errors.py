"""Errors of the projections.

    ProjectionError
    ├── SchemaNameInvalid   a --schema name that is not a plain SQL identifier
    └── BlobWriteFailed     a patched version's definition or IR could not be put in the
                            CAS; the batch rolls back and is retried like a database fault

Undecodable records are not errors here: they are noted in ``projection_poison`` and skipped.
Database and Kafka faults are retried by the runner from the last committed batch.
"""

from __future__ import annotations


class ProjectionError(Exception):
    """Root of every error raised by ``projections``."""


class SchemaNameInvalid(ProjectionError):
    pass


class BlobWriteFailed(ProjectionError):
    pass
