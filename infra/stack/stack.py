"""The whole local stack: Kafka, PostgreSQL, MinIO, then AOB's own services.

``up`` is idempotent: whatever already answers its health check is left alone (also servers
that docker compose or the user runs, when ``AOB_KAFKA_BOOTSTRAP_SERVERS``, ``AOB_POSTGRES_DSN``
or ``AOB_MINIO_ENDPOINT`` point at them); a stale pid file (process gone, e.g. after a
SIGKILL) is dropped and the component restarted on its existing data.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import shutil
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from infra.instances import for_instance, save_scale, saved_scale
from infra.settings import Settings
from infra.stack import kafka, minio, postgres
from infra.stack.errors import MissingPrerequisite, StackError
from infra.stack.process import (
    ServiceSpec,
    ensure_running,
    owned_pid,
    pid_file,
    run_dir,
    stop_spec,
    wait_healthy,
)
from infra.stack.progress import LogProgress, Progress
from infra.stack.services import SERVICES, ServiceFactory

INFRA = ("kafka", "postgres", "minio")
# Folders under home that belong to the stack (what --purge deletes).
DATA_DIRS = ("kafka", "postgres", "minio", "logs", "run")


@dataclass
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    url: str | None
    managed: bool  # started and stopped by this stack (False: servers run by someone else)
    metrics_url: str | None = None  # Prometheus text, for AOB's own services


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as ``AOB_*`` variables, so child services see the same deployment."""
    env: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        key = info.alias or f"AOB_{name.upper()}"
        env[key] = str(value)
    return env


class Stack:
    def __init__(
        self,
        settings: Settings,
        progress: Progress | None = None,
        services: Sequence[ServiceFactory] | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress or LogProgress()
        self._service_factories = list(SERVICES if services is None else services)

    # --- description -------------------------------------------------------------------
    def services(self) -> list[ServiceSpec]:
        """Every process of AOB's services, the instances ``aob up --scale`` asked for
        included (``infra.instances``), in start order."""
        scale = saved_scale(self.settings)
        specs = []
        for factory in self._service_factories:
            first = factory(self.settings)
            if first is None:  # not wanted in this configuration
                continue
            count = scale.get(first.name, 1)
            for i in range(1, count + 1):
                settings = for_instance(self.settings, i)
                spec = first if i == 1 else factory(settings)
                if spec is None:
                    continue
                spec.env = {**settings_env(settings), **spec.env}
                specs.append(spec)
        return specs

    def external(self, name: str) -> bool:
        s = self.settings
        return {
            "kafka": s.kafka_bootstrap_servers is not None,
            "postgres": s.postgres_dsn_override is not None,
            "minio": s.minio_endpoint_override is not None,
        }.get(name, False)

    def urls(self) -> dict[str, str]:
        s = self.settings
        out = {
            "kafka_bootstrap": s.kafka_bootstrap,
            "postgres_dsn": s.postgres_dsn,
            "minio_endpoint": s.minio_endpoint,
            "minio_console_url": minio.console_url(s),
            "command_api_url": s.command_api_url,
            "query_api_url": s.query_api_url,
            # The web UI, served by the query API (query_api.console).
            "console_url": f"{s.query_api_url}/console/",
        }
        for spec in self.services():
            if spec.url:
                out[f"{spec.name}_url"] = spec.url
        return out

    @contextmanager
    def _lock(self) -> Iterator[None]:
        run_dir(self.settings).mkdir(parents=True, exist_ok=True)
        with open(run_dir(self.settings) / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- up -----------------------------------------------------------------------------
    async def up(
        self, infra_only: bool = False, scale: dict[str, int] | None = None
    ) -> list[ComponentStatus]:
        """Start what is missing. ``scale`` (``infra.instances``): how many instances of
        each service to run from now on; instances beyond it are stopped. None: the scale
        asked for last."""
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if scale is not None:
                before = self.services()
                save_scale(s, {**saved_scale(s), **scale})
                wanted = {spec.name for spec in self.services()}
                for spec in reversed(before):
                    if spec.name not in wanted:
                        with self.progress.step(f"stopping {spec.name}…"):
                            await asyncio.to_thread(stop_spec, s, spec)
            await self._prerequisites()
            await asyncio.gather(self._kafka_up(), self._postgres_up(), self._minio_up())
            await self._topics_and_bucket()
            if not infra_only:
                for spec in self.services():
                    with self.progress.step(f"starting {spec.name}…"):
                        await ensure_running(s, spec)
        return await self.components()

    async def _prerequisites(self) -> None:
        """Install (or report, all in one message) what the local components need, before
        anything starts. Components already healthy, or run by someone else, need nothing."""
        s = self.settings
        checks: list[tuple[str, Any, Any]] = [
            ("kafka", kafka.healthy, kafka.ensure_installed),
            ("postgres", postgres.healthy, postgres.ensure_installed),
            ("minio", minio.healthy, minio.ensure_installed),
        ]
        needed = [
            install
            for name, health, install in checks
            if not self.external(name) and not await health(s)
        ]
        results = await asyncio.gather(
            *(asyncio.to_thread(install, s, self.progress) for install in needed),
            return_exceptions=True,
        )
        missing = [str(r) for r in results if isinstance(r, MissingPrerequisite)]
        if missing:
            raise MissingPrerequisite("; ".join(missing))
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def _external_up(self, name: str, health: Any, where: str) -> None:
        with self.progress.step(f"waiting for {name} at {where}…"):
            for _ in range(240):
                if await health(self.settings):
                    return
                await asyncio.sleep(0.25)
        raise StackError(f"{name} at {where} is not reachable (set by AOB_* settings)")

    async def _kafka_up(self) -> None:
        s = self.settings
        await self._server_up(
            "kafka",
            "Kafka",
            s.kafka_bootstrap,
            health=kafka.healthy,
            spec=kafka.spec,
            prepare=kafka.configure,
        )

    async def _postgres_up(self) -> None:
        s = self.settings
        if self.external("postgres"):
            return await self._external_up("PostgreSQL", postgres.healthy, "AOB_POSTGRES_DSN")
        await postgres.ensure_running(s, self.progress)
        return None

    async def _minio_up(self) -> None:
        s = self.settings
        await self._server_up(
            "minio", "MinIO", s.minio_endpoint, health=minio.healthy, spec=minio.spec
        )

    async def _server_up(
        self,
        name: str,
        title: str,
        where: str,
        *,
        health: Callable[[Settings], Awaitable[bool]],
        spec: Callable[[Settings], ServiceSpec],
        prepare: Callable[[Settings], object] | None = None,
    ) -> None:
        """A server the stack runs as one process (Kafka, MinIO): waited for when someone
        else runs it, left alone when it answers, else started (after ``prepare``, which
        writes its configuration) on its existing data."""
        s = self.settings
        if self.external(name):
            return await self._external_up(title, health, where)
        if await health(s):
            return None
        if prepare is not None:
            await asyncio.to_thread(prepare, s)
        with self.progress.step(f"starting {title}…"):
            await ensure_running(s, spec(s))
        return None

    async def _topics_and_bucket(self) -> None:
        from infra.kafka_admin import ensure_topics
        from schemas.topics import all_topics

        s = self.settings
        with self.progress.step("creating topics and bucket…"):
            await ensure_topics(s.kafka_bootstrap, all_topics(s.topic_partitions))
            await minio.ensure_bucket(s)

    # --- down ---------------------------------------------------------------------------
    async def down(self, purge: bool = False) -> list[str]:
        """Stop what this stack started (only processes in our pid files that still match).
        Returns the names stopped. ``purge`` then deletes the stack's data under home."""
        s = self.settings
        stopped: list[str] = []
        if not s.home.exists():
            return stopped
        with self._lock():
            for spec in reversed(self.services()):
                if await asyncio.to_thread(stop_spec, s, spec):
                    stopped.append(spec.name)
            save_scale(s, {})  # the next `aob up` starts one of each unless told otherwise
            specs = [kafka.spec(s), minio.spec(s)]
            results = await asyncio.gather(
                *(asyncio.to_thread(stop_spec, s, spec) for spec in specs),
                asyncio.to_thread(postgres.stop, s),
            )
            names = ["kafka", "minio", "postgres"]
            stopped += [n for n, ok in zip(names, results, strict=True) if ok]
        if purge:
            for name in DATA_DIRS:
                shutil.rmtree(s.home / name, ignore_errors=True)
            with contextlib.suppress(OSError):
                s.home.rmdir()  # only when nothing else lives there
        return stopped

    # --- status -------------------------------------------------------------------------
    async def components(self) -> list[ComponentStatus]:
        s = self.settings
        kspec, mspec = kafka.spec(s), minio.spec(s)
        k_ok, p_ok, m_ok = await asyncio.gather(
            kafka.healthy(s), postgres.healthy(s), minio.healthy(s)
        )
        out = [
            self._process_status("kafka", k_ok, kspec, s.kafka_bootstrap),
            ComponentStatus(
                "postgres",
                p_ok,
                postgres.postmaster_pid(s),
                s.postgres_dsn,
                not self.external("postgres"),
            ),
            self._process_status("minio", m_ok, mspec, mspec.url),
        ]
        for spec in self.services():
            out.append(self._process_status(spec.name, await spec.health(), spec, spec.url))
        return out

    def _process_status(
        self, name: str, running: bool, spec: ServiceSpec, url: str | None
    ) -> ComponentStatus:
        """A component the stack runs as one process with a pid file (all but PostgreSQL,
        whose postmaster keeps its own); managed unless the settings point at someone else's."""
        pid = owned_pid(pid_file(self.settings, name), spec.cmdline_match)
        return ComponentStatus(name, running, pid, url, not self.external(name), spec.metrics_url)

    async def status(self) -> dict[str, Any]:
        comps = await self.components()
        return {
            **self.urls(),
            "home": str(self.settings.home),
            "components": [asdict(c) for c in comps],
        }

    async def infra_healthy(self) -> bool:
        comps = {c.name: c.running for c in await self.components()}
        return all(comps.get(n) for n in INFRA)

    async def wait(self, spec: ServiceSpec, timeout: float | None = None) -> None:
        await wait_healthy(self.settings, spec, None, timeout)
