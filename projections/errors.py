"""Errors of the projections.

    ProjectionError
    └── BlobWriteFailed     a patched version's definition or IR could not be put in the
                            CAS; the batch rolls back and is retried like a database fault

A ``--schema`` name that is no SQL identifier is ``read_model.errors.SchemaNameInvalid``.
Undecodable records are not errors here: they are noted in ``projection_poison`` and skipped.
Database and Kafka faults are retried by the runner from the last committed batch.
"""

from __future__ import annotations


class ProjectionError(Exception):
    """Root of every error raised by ``projections``."""


class BlobWriteFailed(ProjectionError):
    pass
