"""MinIO: the S3 server behind the CAS. Built from source with ``go install`` at a pinned
pseudo-version into ``<cache_dir>/bin`` (first run only: a few minutes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx

from infra.settings import Settings
from infra.stack.errors import StackError
from infra.stack.process import ServiceSpec
from infra.stack.progress import Progress
from infra.stack.tools import require

MODULE = "github.com/minio/minio"


def binary(settings: Settings) -> Path:
    return settings.cache_dir / "bin" / "minio"


def ensure_installed(settings: Settings, progress: Progress) -> None:
    target = binary(settings)
    if target.exists():
        return
    go = require("go", None, progress, "Go 1.24+ (https://go.dev/doc/install)")
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(target.parent), "CGO_ENABLED": "0"}
    log = settings.cache_dir / "minio-build.log"
    with progress.step("building MinIO (first run, a few minutes)…"), open(log, "wb") as out:
        done = subprocess.run(
            [go, "install", f"{MODULE}@{settings.minio_version}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0 or not target.exists():
        raise StackError(f"building MinIO with `go install` failed; see {log}")


def _url(settings: Settings) -> str:
    return f"http://{settings.minio_endpoint}"


async def healthy(settings: Settings) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            r = await client.get(f"{_url(settings)}/minio/health/live")
            return r.status_code == 200
    except httpx.HTTPError:
        return False


def console_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.minio_console_port}"


def spec(settings: Settings) -> ServiceSpec:
    data = settings.home / "minio"
    return ServiceSpec(
        name="minio",
        argv=[
            str(binary(settings)),
            "server",
            str(data),
            "--address",
            f"{settings.host}:{settings.minio_port}",
            "--console-address",
            f"{settings.host}:{settings.minio_console_port}",
        ],
        env={
            "MINIO_ROOT_USER": settings.minio_access_key,
            "MINIO_ROOT_PASSWORD": settings.minio_secret_key,
            "MINIO_UPDATE": "off",
            "MINIO_BROWSER_REDIRECT": "off",
        },
        health=lambda: healthy(settings),
        url=_url(settings),
        match=str(data),
        start_timeout=60,
    )


def _ensure_bucket_sync(settings: Settings) -> None:
    from minio import Minio

    client = Minio(
        settings.minio_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key,
        secure=False,
    )
    if not client.bucket_exists(settings.minio_bucket):
        client.make_bucket(settings.minio_bucket)


async def ensure_bucket(settings: Settings) -> None:
    last: Exception | None = None
    for _ in range(20):
        try:
            await asyncio.to_thread(_ensure_bucket_sync, settings)
            return
        except Exception as exc:  # noqa: BLE001 - server may still be warming up
            last = exc
            await asyncio.sleep(0.5)
    raise StackError(f"cannot create bucket {settings.minio_bucket}: {last}")
