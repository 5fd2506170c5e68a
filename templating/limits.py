"""What one template render may cost, read from ``AOB_TEMPLATE_*`` environment variables.

The sandbox bounds what a template may touch; these bound what it may spend. They are
enforced by the render pool (``templating.renders``), which runs each render in a process
of its own and stops it at the limit.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RenderLimits(BaseSettings):
    """Limits of the render pool. Each field is ``AOB_TEMPLATE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="AOB_TEMPLATE_", extra="ignore")

    timeout_s: float = Field(
        2.0,
        gt=0,
        description="Wall-clock time one render may run, from when a process takes it; past "
        "it the process is killed and replaced.",
    )
    memory_mib: int = Field(
        256,
        ge=16,
        description="Address space a render process may take on top of what it holds when "
        "it is ready (the interpreter, Jinja, the sandbox: about 26 MiB); a process that "
        "reached it is replaced.",
    )
    processes: int = Field(
        2, ge=1, description="Render processes: how many templates render at the same time."
    )
    renders_per_process: int = Field(
        1000,
        ge=0,
        description="Renders after which a process is replaced by a fresh one, so that what "
        "renders leave behind (template caches, a fragmented heap) cannot grow for ever; "
        "0: never.",
    )
