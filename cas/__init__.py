"""Content-addressed storage: values stored under their sha256, referenced as
``cas://sha256:<hex>``. Writes are idempotent; reads verify the hash."""

from cas.store import BlobCorrupted, BlobNotFound, CasError, ContentStore

__all__ = ["BlobCorrupted", "BlobNotFound", "CasError", "ContentStore"]
