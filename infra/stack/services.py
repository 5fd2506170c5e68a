"""AOB's own long-running services, started by ``aob up`` after the infrastructure.

Append a factory ``(Settings) -> ServiceSpec`` to :data:`SERVICES` to have ``aob up`` start
the service detached (log ``<home>/logs/<name>.log``, pid ``<home>/run/<name>.pid``), wait for
its health check, list it in ``aob status`` and stop it in ``aob down``. Example::

    def command_api(settings: Settings) -> ServiceSpec:
        return ServiceSpec(
            name="command_api",
            argv=[sys.executable, "-m", "command_api", "--port", str(settings.command_api_port)],
            health=lambda: http_ok(f"{settings.command_api_url}/healthz"),
            url=settings.command_api_url,
            match="-m command_api",
        )

    SERVICES.append(command_api)

Services are started in list order and stopped in reverse order; every service gets the
settings through the inherited ``AOB_*`` environment.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import httpx

from infra.instances import instance_name
from infra.metrics import metrics_url
from infra.scripted_llm.mode import uses_scripted_model
from infra.scripted_llm.mode import worker_env as scripted_model_env
from infra.settings import Settings
from infra.stack.process import ServiceSpec

# A factory may answer None: the service is not wanted in this configuration.
ServiceFactory = Callable[[Settings], ServiceSpec | None]

SERVICES: list[ServiceFactory] = []


async def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Health check helper: GET ``url`` answers 2xx."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url)
            return response.is_success
    except httpx.HTTPError:
        return False


def _python_service(
    name: str, module: str, settings: Settings, url: str | None = None
) -> ServiceSpec:
    from infra.heartbeat import is_fresh
    from infra.stack.process import owned_pid, pid_file

    match = f"-m {module}"
    instance = instance_name(name, settings.instance)  # infra.instances

    async def healthy() -> bool:
        if url is not None:
            return await http_ok(f"{url}/healthz")
        # A fresh heartbeat left by a process that just died must not pass for a live one.
        alive = owned_pid(pid_file(settings, instance), match) is not None
        return alive and is_fresh(settings, name)

    return ServiceSpec(
        name=instance,
        metrics_url=metrics_url(settings, name),
        argv=[sys.executable, "-m", module],
        health=healthy,
        url=url,
        match=match,
        start_timeout=90.0,
    )


def projections(settings: Settings) -> ServiceSpec:
    return _python_service("projections", "projections", settings)


def coordinator(settings: Settings) -> ServiceSpec:
    return _python_service("coordinator", "processors", settings)


def workers(settings: Settings) -> ServiceSpec:
    spec = _python_service("workers", "workers", settings)
    if uses_scripted_model():
        spec.env.update(scripted_model_env(settings))
    return spec


def scripted_llm(settings: Settings) -> ServiceSpec | None:
    """The local scripted model, only when no OPENAI_API_KEY is set (infra.scripted_llm)."""
    if not uses_scripted_model():
        return None
    url = settings.scripted_llm_url
    return ServiceSpec(
        name="scripted_llm",
        argv=[
            sys.executable,
            "-m",
            "infra.scripted_llm",
            "--port",
            f"{settings.scripted_llm_port}",
        ],
        health=lambda: http_ok(f"{url}/healthz"),
        url=url,
        match="-m infra.scripted_llm",
    )


def command_api(settings: Settings) -> ServiceSpec:
    return _python_service("command_api", "command_api", settings, url=settings.command_api_url)


def query_api(settings: Settings) -> ServiceSpec:
    return _python_service("query_api", "query_api", settings, url=settings.query_api_url)


# Read side first (so nothing appended is waited on by nobody), then the deciders (the
# scripted model before the workers that call it), then the doors users knock on.
SERVICES.extend([projections, coordinator, scripted_llm, workers, query_api, command_api])
