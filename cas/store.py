"""The CAS over any S3-compatible server (MinIO here), through the minio client.

The minio client is synchronous; calls run in a thread so that async services never block
their loop on storage.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any, Protocol, cast

from minio import Minio
from minio.error import S3Error

from infra.settings import Settings
from schemas.canonical import canonical_json, cas_ref, digest_of_ref, sha256_hex


class CasError(Exception):
    """Root of CAS errors.

    CasError
    ├── BlobNotFound   no blob under that hash
    └── BlobCorrupted  the stored bytes do not hash to their name
    """


class BlobNotFound(CasError):
    pass


class BlobCorrupted(CasError):
    pass


class S3Client(Protocol):
    def put_object(
        self, bucket_name: str, object_name: str, data: Any, length: int, **kw: Any
    ) -> Any: ...
    def get_object(self, bucket_name: str, object_name: str, **kw: Any) -> Any: ...
    def bucket_exists(self, bucket_name: str) -> bool: ...
    def make_bucket(self, bucket_name: str, **kw: Any) -> Any: ...


def object_name(digest: str) -> str:
    return f"sha256/{digest[:2]}/{digest}"


class ContentStore:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings) -> ContentStore:
        client = Minio(
            settings.minio_endpoint,
            access_key=settings.minio_access_key,
            secret_key=settings.minio_secret_key,
            secure=False,
        )
        # Minio's signatures name their keyword arguments; the protocol takes any.
        return cls(cast("S3Client", client), settings.minio_bucket)

    def ensure_bucket(self) -> None:
        if not self._client.bucket_exists(self._bucket):
            try:
                self._client.make_bucket(self._bucket)
            except S3Error as e:  # another process made it first
                if e.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    # --- bytes ---------------------------------------------------------------------------

    def put_bytes_sync(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        digest = sha256_hex(data)
        # Same name, same bytes: a repeated write changes nothing, so no existence check.
        self._client.put_object(
            self._bucket,
            object_name(digest),
            io.BytesIO(data),
            len(data),
            content_type=content_type,
        )
        return cas_ref(digest)

    def get_bytes_sync(self, ref: str) -> bytes:
        digest = digest_of_ref(ref)
        try:
            response = self._client.get_object(self._bucket, object_name(digest))
        except S3Error as e:
            if e.code in {"NoSuchKey", "NoSuchObject"}:
                raise BlobNotFound(f"no blob for {ref}") from e
            raise CasError(f"reading {ref}: {e}") from e
        try:
            data: bytes = response.read()
        finally:
            response.close()
            response.release_conn()
        if sha256_hex(data) != digest:
            raise BlobCorrupted(f"blob {ref} does not match its hash")
        return data

    async def put_bytes(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        return await asyncio.to_thread(self.put_bytes_sync, data, content_type)

    async def get_bytes(self, ref: str) -> bytes:
        return await asyncio.to_thread(self.get_bytes_sync, ref)

    # --- JSON values ---------------------------------------------------------------------

    async def put_json(self, value: Any) -> tuple[str, int]:
        """Store a JSON value in canonical form; returns (ref, size in bytes)."""
        data = canonical_json(value)
        return await self.put_bytes(data, "application/json"), len(data)

    async def get_json(self, ref: str) -> Any:
        return json.loads(await self.get_bytes(ref))
