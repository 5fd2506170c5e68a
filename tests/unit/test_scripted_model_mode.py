"""Whether ``aob up`` runs the scripted model and where it points the workers."""

from __future__ import annotations

import pytest

from infra.scripted_llm.mode import PLACEHOLDER_KEY, uses_scripted_model
from infra.settings import Settings
from infra.stack import Stack


def test_without_a_key_the_scripted_model_runs_and_the_workers_use_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://example.invalid/v1")
    settings = Settings(scripted_llm_port=28123)
    specs = {s.name: s for s in Stack(settings).services()}
    assert uses_scripted_model()
    assert specs["scripted_llm"].url == "http://127.0.0.1:28123"
    assert "--port" in specs["scripted_llm"].argv and "28123" in specs["scripted_llm"].argv
    names = list(specs)
    assert names.index("scripted_llm") < names.index("workers")
    assert specs["workers"].env["OPENAI_BASE_URL"] == "http://127.0.0.1:28123/v1"
    assert specs["workers"].env["OPENAI_API_KEY"] == PLACEHOLDER_KEY
    assert Stack(settings).urls()["scripted_llm_url"] == "http://127.0.0.1:28123"


def test_with_a_key_there_is_no_scripted_model_and_the_workers_keep_the_users_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-user")
    specs = {s.name: s for s in Stack(Settings()).services()}
    assert not uses_scripted_model()
    assert "scripted_llm" not in specs
    assert "OPENAI_BASE_URL" not in specs["workers"].env
    assert "OPENAI_API_KEY" not in specs["workers"].env
