"""Whether agents answer from the scripted model: they do when no ``OPENAI_API_KEY`` is set.

``aob up`` then starts the scripted model and points the workers at it; with a key, the
workers use ``OPENAI_BASE_URL`` (or OpenAI's own endpoint) and no scripted model runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from infra.settings import Settings

PLACEHOLDER_KEY = "scripted-model-no-key"


def uses_scripted_model(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return not env.get("OPENAI_API_KEY")


def worker_env(settings: Settings) -> dict[str, str]:
    """What the workers need in their environment to talk to the scripted model."""
    return {"OPENAI_BASE_URL": f"{settings.scripted_llm_url}/v1", "OPENAI_API_KEY": PLACEHOLDER_KEY}


def notice(settings: Settings) -> str:
    """The plain words users see when agents answer from the scripted model."""
    return (
        f"no OPENAI_API_KEY is set: agent nodes answer from the local scripted model at "
        f"{settings.scripted_llm_url} (canned replies, not a real LLM); set OPENAI_API_KEY "
        f"(and OPENAI_BASE_URL for another provider) before `aob up` to use a real model"
    )
