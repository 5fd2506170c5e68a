"""A node type of a user's own, on the running system, as a user runs it: a module with one
``@node`` in a folder outside the repository, served by ``python -m aob.worker`` (the same
code as ``aob worker``), a workflow that uses the type published and run.

- The run completes with the node's output in GraphQL; the node's progress report is in the
  run's timeline; ``nodeTypes`` shows the type with its live worker while it runs, and
  without one once the worker stopped (SIGTERM: a clean stop, exit status 0), and the
  built-in types live too (the stack's workers beat for them through the same code).
- The worker is killed (SIGKILL) while it runs the task: a worker started again on the same
  module runs the same attempt again, under the same idempotency key, and the run completes.
- ``NonRetryable`` fails the node with its message, once, although its retry policy allows
  three attempts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients, statuses
from tests.helpers import eventually, stop_process

pytestmark = pytest.mark.connected

ROOT = Path(__file__).resolve().parents[3]

MODULE = '''
"""A user's node type (written by the test into a folder of its own)."""

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from aob import Job, NonRetryable, node

GATE = Path(os.environ["SHOUT_GATE"])


class ShoutConfig(BaseModel):
    text: str
    wait: bool = False
    refuse: bool = False


@node("{name}", config=ShoutConfig, description="Shouts its text.")
async def shout(job: Job[ShoutConfig]) -> dict:
    started = GATE / f"started-{{job.attempt}}-{{os.getpid()}}"
    started.write_text(job.idempotency_key)
    if job.config.refuse:
        raise NonRetryable(f"refusing to shout {{job.config.text!r}}")
    await job.progress("clearing my throat", 0.5)
    while job.config.wait and not (GATE / "open").exists():
        await asyncio.sleep(0.05)
    return {{"text": job.config.text.upper(), "key": job.idempotency_key, "pid": os.getpid()}}
'''

RUN = """query($id: ID!, $after: String) { run(id: $id, after: $after) {
  status nodes { id status attempts error output }
  events(first: 200) { edges { node { type payload } } } } }"""
NODE_TYPES = "{ nodeTypes { name builtIn description configSchema liveWorkers live } }"


class UserFolder:
    """A folder outside the repository with the user's module, and its workers."""

    def __init__(self, path: Path, name: str, api_key: str) -> None:
        self.path = path
        self.name = name
        self.gate = path / "gate"
        self.gate.mkdir()
        (path / "shout_node.py").write_text(MODULE.format(name=name))
        self.api_key = api_key
        self.started: list[subprocess.Popen[bytes]] = []

    def start_worker(self) -> subprocess.Popen[bytes]:
        """``python -m aob.worker shout_node.py`` in the folder, once it serves."""
        log_path = self.path / f"worker-{len(self.started)}.log"
        env = {
            **os.environ,
            "AOB_API_KEY": self.api_key,
            "SHOUT_GATE": str(self.gate),
            # The SDK as installed in the repository's environment (sdk/ holds `aob`).
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sdk")]),
        }
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "aob.worker", "shout_node.py"],
                cwd=self.path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started.append(proc)
        deadline = time.monotonic() + 90
        while b"serving" not in log_path.read_bytes():  # registered, signal handlers set
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"the worker did not start:\n{log_path.read_text()}"
            time.sleep(0.1)
        return proc

    def starts(self) -> list[tuple[int, int, str]]:
        """(attempt, worker pid, idempotency key) of every time the node's code started."""
        out = []
        for f in self.gate.glob("started-*"):
            _, attempt, pid = f.name.split("-")
            out.append((int(attempt), int(pid), f.read_text()))
        return sorted(out)

    def log(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.path.glob("worker-*.log")))


@contextmanager
def user_folder(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[UserFolder]:
    folder = UserFolder(
        tmp_path_factory.mktemp("shout-user"), f"shout-{uuid.uuid4().hex[:8]}", api_key
    )
    assert not folder.path.resolve().is_relative_to(ROOT)
    try:
        yield folder
    finally:
        for proc in folder.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def workflow(name: str, config: dict[str, Any], **node: Any) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "start", "type": "noop"},
            {"id": "loud", "type": name, "config": config, **node},
        ],
        "edges": [{"from": "start", "to": "loud"}],
    }


def node_of(run: dict[str, Any], node_id: str = "loud") -> dict[str, Any]:
    (found,) = [n for n in run["nodes"] if n["id"] == node_id]
    return found


def finished(status: str) -> Any:
    def check(run: dict[str, Any]) -> None:
        assert run["status"] == status, (run["status"], statuses(run))

    return check


async def listed(client: RunClient, name: str) -> dict[str, Any]:
    types = {t["name"]: t for t in (await client.query(NODE_TYPES))["nodeTypes"]}
    return types[name]


async def test_a_users_node_runs_to_completion_with_its_output_in_graphql(
    services: Settings, api_key: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with user_folder(tmp_path_factory, api_key) as user:
        worker = user.start_worker()
        async with http_clients(services, api_key) as (rest, gql):
            client = RunClient(rest, gql, RUN)
            shown = await listed(client, user.name)
            assert shown["builtIn"] is False
            assert shown["description"] == "Shouts its text."
            assert shown["configSchema"]["required"] == ["text"]
            live = await eventually(lambda: _live(client, user.name, True), timeout=30)
            assert live["liveWorkers"] == [f"{os.uname().nodename}:{worker.pid}"]
            # The stack's own workers serve the built-in types through the same code.
            assert (await listed(client, "noop"))["live"] is True

            definition = workflow(user.name, {"text": "{{ input.word }}"})
            run_id, position = await client.submit("shouting", definition, {"word": "hey"})
            run = await client.until(run_id, finished("COMPLETED"), after=position, timeout=90)
            loud = node_of(run)
            assert loud["status"] == "SUCCEEDED"
            assert loud["output"] == {
                "text": "HEY",
                "key": f"{run_id}/loud/1",
                "pid": worker.pid,
            }
            progress = [
                e["node"]["payload"]
                for e in run["events"]["edges"]
                if e["node"]["type"] == "run.node_progress"
            ]
            assert [(p["node_id"], p["message"], p["fraction"]) for p in progress] == [
                ("loud", "clearing my throat", 0.5)
            ]

            # A config that breaks the type's schema is refused at publish.
            bad = await rest.post(
                "/v1/workflows",
                json={"name": "mute", "definition": workflow(user.name, {"txt": "x"})},
            )
            assert bad.status_code == 422, bad.text

            assert stop_process(worker, grace_s=30) == 0, user.log()  # SIGTERM: clean
            shown = await listed(client, user.name)
            assert (shown["live"], shown["liveWorkers"]) == (False, [])


async def _live(client: RunClient, name: str, live: bool) -> dict[str, Any]:
    shown = await listed(client, name)
    assert shown["live"] is live, shown
    return shown


async def test_a_killed_worker_s_task_is_redone_under_the_same_idempotency_key(
    services: Settings, api_key: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with user_folder(tmp_path_factory, api_key) as user:
        first = user.start_worker()
        async with http_clients(services, api_key) as (rest, gql):
            client = RunClient(rest, gql, RUN)
            definition = workflow(user.name, {"text": "later", "wait": True}, timeout_s=300)
            run_id, position = await client.submit("waiting", definition)

            def started_once() -> None:
                assert [(a, pid) for a, pid, _ in user.starts()] == [(1, first.pid)], user.log()

            await eventually(started_once, timeout=60)
            first.send_signal(signal.SIGKILL)  # while the node's code runs
            first.wait()
            (user.gate / "open").write_text("")

            second = user.start_worker()
            run = await client.until(run_id, finished("COMPLETED"), after=position, timeout=120)
            key = f"{run_id}/loud/1"
            assert user.starts() == sorted([(1, first.pid, key), (1, second.pid, key)])
            loud = node_of(run)
            assert loud["attempts"] == 1  # the same attempt, run again: no retry
            assert loud["output"] == {"text": "LATER", "key": key, "pid": second.pid}
            assert stop_process(second, grace_s=30) == 0, user.log()


async def test_a_non_retryable_error_fails_the_node_once_with_its_message(
    services: Settings, api_key: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with user_folder(tmp_path_factory, api_key) as user:
        worker = user.start_worker()
        async with http_clients(services, api_key) as (rest, gql):
            client = RunClient(rest, gql, RUN)
            definition = workflow(
                user.name,
                {"text": "no", "refuse": True},
                retry={"max_attempts": 3, "backoff_s": 0},
            )
            run_id, position = await client.submit("refusing", definition)
            run = await client.until(run_id, finished("FAILED"), after=position, timeout=90)
            loud = node_of(run)
            assert loud["status"] == "FAILED"
            assert loud["attempts"] == 1
            assert "refusing to shout 'no'" in loud["error"], loud
            assert [a for a, _, _ in user.starts()] == [1]
            assert stop_process(worker, grace_s=30) == 0, user.log()


async def test_a_worker_that_cannot_reach_kafka_says_so_and_exits_1(
    services: Settings, api_key: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with user_folder(tmp_path_factory, api_key) as user:
        env = {
            **os.environ,
            "AOB_API_KEY": api_key,
            "SHOUT_GATE": str(user.gate),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sdk")]),
            "AOB_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # nothing listens there
        }
        result = subprocess.run(
            [sys.executable, "-m", "aob.worker", "shout_node.py"],
            cwd=user.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("python -m aob.worker: Kafka at 127.0.0.1:9 cannot be reached")
        assert "Traceback" not in result.stderr
