"""What ``aob worker MODULE`` does before it serves: load the module as its user names it,
register its types with the command API (and stop with the API's reason if refused), and
beat their liveness in the registry. No server: the API is an ``httpx.MockTransport`` and
the registry a recording fake."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from aob import node
from aob.loading import LoadError, load_module, load_nodes
from aob.registration import Liveness, RegistrationRefused, register

ROOT = Path(__file__).resolve().parents[2]

SHOUT = '''
from pydantic import BaseModel

from aob import Job, node


class ShoutConfig(BaseModel):
    text: str


@node("{name}", config=ShoutConfig)
async def shout(job: Job[ShoutConfig]) -> dict[str, str]:
    """Shouts."""
    return {{"text": job.config.text.upper()}}
'''


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh current directory; the modules imported from it are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


# --- loading -----------------------------------------------------------------------------


def test_a_file_path_is_loaded_with_its_nodes(folder: Path) -> None:
    (folder / "sub").mkdir()
    (folder / "sub" / "shout_a.py").write_text(SHOUT.format(name="shout-a"))
    module, nodes = load_nodes("sub/shout_a.py")
    assert module.__name__ == "shout_a"
    assert [n.name for n in nodes] == ["shout-a"]
    assert nodes[0].description == "Shouts."


def test_a_dotted_name_is_found_from_the_current_directory(folder: Path) -> None:
    (folder / "shop_b").mkdir()
    (folder / "shop_b" / "__init__.py").write_text("")
    (folder / "shop_b" / "nodes.py").write_text(SHOUT.format(name="shout-b"))
    _, nodes = load_nodes("shop_b.nodes")
    assert [n.name for n in nodes] == ["shout-b"]


def test_a_file_imports_its_neighbours(folder: Path) -> None:
    (folder / "helpers_c.py").write_text("WORD = 'hey'\n")
    (folder / "uses_c.py").write_text(
        "from helpers_c import WORD\nfrom aob import node\n\n"
        "@node('uses-c')\nasync def f(job):\n    return WORD\n"
    )
    _, nodes = load_nodes(str(folder / "uses_c.py"))
    assert [n.name for n in nodes] == ["uses-c"]


@pytest.mark.parametrize(
    ("files", "target", "words"),
    [
        ({}, "missing_d.py", "missing_d.py: no such file"),
        ({}, "missing_d", "no module named 'missing_d'"),
        ({"empty_d.py": "X = 1\n"}, "empty_d.py", "declares no node type"),
        ({"notes_d.txt": ""}, "./notes_d.txt", "not a Python file"),
        ({"json.py": ""}, "json.py", "a module named 'json' is imported already"),
        (
            {"twice_d.py": SHOUT.format(name="same") + "\nagain = node('same')(shout.function)\n"},
            "twice_d.py",
            "node type 'same' is declared twice",
        ),
    ],
)
def test_what_cannot_be_served_is_said(
    folder: Path, files: dict[str, str], target: str, words: str
) -> None:
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(LoadError, match=words):
        load_nodes(target)


def test_an_error_in_the_module_itself_is_the_modules_own(folder: Path) -> None:
    (folder / "broken_e.py").write_text("import no_such_dependency_e\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_e"):
        load_module("broken_e.py")
    assert "broken_e" not in sys.modules
    (folder / "pkg_e").mkdir()
    (folder / "pkg_e" / "__init__.py").write_text("")
    (folder / "pkg_e" / "mod.py").write_text("import no_such_dependency_e\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_e"):
        load_module("pkg_e.mod")


# --- registration ------------------------------------------------------------------------


@node("shout")
async def shout(job: Any) -> Any:
    """Shouts."""
    return None


@node("whisper")
async def whisper(job: Any) -> Any:
    return None


class Api:
    """The command API's ``PUT /v1/node-types/{name}``, answering as told."""

    def __init__(self, status: int = 200, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        self.calls: list[tuple[str, str, dict[str, Any], str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append(
            (request.method, request.url.path, body, request.headers["Authorization"])
        )
        if self.status != 200:
            return httpx.Response(self.status, json={"title": "refused", "detail": self.detail})
        name = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"name": name, "tenant": "acme", "topic": f"t.{name}"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


async def test_each_type_is_registered_with_its_schemas_for_the_keys_tenant() -> None:
    api = Api()
    tenant = await register(
        [shout, whisper], api_url="http://api", api_key="k-1", transport=api.transport()
    )
    assert tenant == "acme"
    assert api.calls == [
        (
            "PUT",
            "/v1/node-types/shout",
            {"config_schema": {}, "output_schema": None, "description": "Shouts."},
            "Bearer k-1",
        ),
        (
            "PUT",
            "/v1/node-types/whisper",
            {"config_schema": {}, "output_schema": None, "description": ""},
            "Bearer k-1",
        ),
    ]


async def test_a_refusal_stops_the_worker_with_the_apis_reason() -> None:
    api = Api(409, "node type 'shout' is registered by another tenant")
    with pytest.raises(RegistrationRefused) as refused:
        await register([shout], api_url="http://api", api_key="k", transport=api.transport())
    assert str(refused.value) == (
        "the command API refused node type 'shout' (PUT /v1/node-types/shout: 409): "
        "node type 'shout' is registered by another tenant"
    )


async def test_without_a_key_or_an_api_nothing_is_served() -> None:
    with pytest.raises(RegistrationRefused, match="AOB_API_KEY is not set"):
        await register([shout], api_url="http://api", api_key=None)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(RegistrationRefused, match=r"did not answer \(ConnectError"):
        await register(
            [shout], api_url="http://api", api_key="k", transport=httpx.MockTransport(unreachable)
        )


class Registry:
    def __init__(self, failing: int = 0, enough: int = 2) -> None:
        self.beats: list[tuple[str, list[str], str]] = []
        self.gone_calls: list[tuple[list[str], str]] = []
        self.failing = failing
        self.enough = enough
        self.beaten = asyncio.Event()

    async def beat(self, tenant: str, names: Sequence[str], worker: str) -> None:
        if self.failing:
            self.failing -= 1
            raise OSError("PostgreSQL is restarting")
        self.beats.append((tenant, list(names), worker))
        if len(self.beats) >= self.enough:
            self.beaten.set()

    async def gone(self, names: Sequence[str], worker: str) -> None:
        self.gone_calls.append((list(names), worker))


async def test_liveness_beats_until_stopped_and_outlives_a_failed_beat() -> None:
    registry = Registry(failing=1)
    liveness = Liveness(registry, "acme", ["shout", "whisper"], "host:1", interval_s=0.001)
    task = asyncio.create_task(liveness.run())
    await registry.beaten.wait()  # two beats, after the failed one
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await liveness.gone()
    assert registry.beats[0] == ("acme", ["shout", "whisper"], "host:1")
    assert registry.gone_calls == [(["shout", "whisper"], "host:1")]


# --- the command ---------------------------------------------------------------------------


def run_worker_command(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'sdk'}", **env}
    return subprocess.run(
        [sys.executable, "-m", "aob.worker", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_says_what_stops_it_in_one_line_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "shout_f.py").write_text(SHOUT.format(name="shout-f"))
    no_key = run_worker_command(["shout_f.py"], tmp_path)
    assert no_key.returncode == 1
    assert (
        no_key.stderr.strip()
        .splitlines()[-1]
        .startswith("python -m aob.worker: AOB_API_KEY is not set")
    )
    # A command API that is not there (a port nothing listens on).
    no_api = run_worker_command(
        ["shout_f.py"], tmp_path, AOB_API_KEY="k", AOB_COMMAND_API_PORT="9", AOB_HOME=str(tmp_path)
    )
    assert no_api.returncode == 1
    assert "did not answer" in no_api.stderr
    assert "Traceback" not in no_api.stderr
    missing = run_worker_command(["nowhere.py"], tmp_path)
    assert missing.returncode == 1
    assert "nowhere.py: no such file" in missing.stderr


def test_the_sdk_imports_without_the_services_dependencies(tmp_path: Path) -> None:
    """``aob`` and ``aob.worker`` must stand without faust, FastAPI, Strawberry (the
    services') and the OpenAI client (the agent node's): blocked here, an import of any of
    them fails."""
    probe = textwrap.dedent(
        """
        import sys
        for name in ("faust", "fastapi", "strawberry", "uvicorn", "openai", "typer"):
            sys.modules[name] = None
        import aob
        import aob.worker
        from aob import Job, NonRetryable, node
        print("imported")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'sdk'}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
