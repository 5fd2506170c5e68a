"""``aob demo``: publish the example workflows and run one end to end, printing its timeline.

While the run waits for its approval, the demo patches it (a node between the agent and the
end) and approves it. The run ends with an agent node; with no ``OPENAI_API_KEY`` set it
answers from the local scripted model that ``aob up`` started (``infra.scripted_llm``), and
the demo says so.

It goes through the same doors a user does: the REST command API to publish and submit, and
the GraphQL query API to watch the run, so a green demo means every part works together.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from auth import issue_key
from cli import CLIError
from cli.api_client import TERMINAL_RUN_STATUSES, ApiClient
from cli.patch_tables import versions_table
from cli.stack_commands import RichProgress
from cli.timeline import nodes_table, timeline_table
from infra.scripted_llm.mode import notice as scripted_model_notice
from infra.scripted_llm.mode import uses_scripted_model
from infra.settings import Settings
from infra.stack import Stack

console = Console()

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
DEMO_TENANT = "demo"
DEMO_WORKFLOW = "agent-report"
DEMO_INPUT = {"name": "world", "numbers": [3, 1, 4, 1, 5]}
# While the run waits for its approval, the demo patches it: a `check` node goes between the
# agent and `done`, both still pending. The `test` operation makes the patch refuse to apply
# to a definition whose edge 7 is not the one it means to replace.
DEMO_PATCH = [
    {"op": "test", "path": "/edges/7", "value": {"from": "write", "to": "done"}},
    {"op": "remove", "path": "/edges/7"},
    {
        "op": "add",
        "path": "/nodes/-",
        "value": {
            "id": "check",
            "type": "transform",
            "config": {"output": {"words": "{{ nodes.write.output.text | wordcount }}"}},
        },
    },
    {"op": "add", "path": "/edges/-", "value": {"from": "write", "to": "check"}},
    {"op": "add", "path": "/edges/-", "value": {"from": "check", "to": "done"}},
]
DEMO_PATCH_REASON = "count the words of the write-up before the run ends"


async def _demo(settings: Settings, timeout: float) -> bool:
    progress = RichProgress(console)
    await Stack(settings, progress=progress).up()
    if uses_scripted_model():
        console.print(f"[yellow]{scripted_model_notice(settings)}[/]")
    with progress.step("creating an API key for tenant 'demo'…"):
        key = await issue_key(settings.postgres_dsn, DEMO_TENANT)
    examples = sorted(EXAMPLES_DIR.glob("*.json"))
    if not examples:
        raise CLIError(f"no example workflows in {EXAMPLES_DIR}")
    async with ApiClient(settings, key) as api:
        for path in examples:
            answer = await api.command("/v1/workflows", json.loads(path.read_text()), 201)
            console.print(
                f"published [bold]{path.stem}[/] version {answer['version'][:12]} "
                f"[dim](workflow {answer['workflow_id']})[/]"
            )
        submitted = await api.command(
            "/v1/runs", {"workflow_id": DEMO_WORKFLOW, "input": DEMO_INPUT}, 202
        )
        run_id = submitted["run_id"]
        console.print(f"submitted run [bold]{run_id}[/] with input {json.dumps(DEMO_INPUT)}")
        started = time.monotonic()
        with console.status("waiting for the run…") as status:

            def show(run: dict) -> None:  # type: ignore[type-arg]
                done = sum(n["status"] in {"SUCCEEDED", "SKIPPED"} for n in run["nodes"])
                status.update(f"run {run['status']}: {done}/{len(run['nodes'])} nodes finished")

            run = await api.wait_for_run(
                run_id, submitted["position"], timeout, show, until=frozenset({"WAITING"})
            )
        patch = await _patch(api, run, timeout)
        for approval in [a for a in run.get("approvals", []) if a["status"] == "WAITING"]:
            # A person would decide here (REST or a UI listing pendingApprovals); the demo
            # decides itself, through the same door.
            console.print(
                f"the run waits for an approval of [bold]{approval['nodeId']}[/]: "
                f"{escape(approval['prompt'])!r}; the demo approves it "
                f"(POST /v1/runs/{run_id}/approvals/{approval['nodeId']})"
            )
            await api.command(
                f"/v1/runs/{run_id}/approvals/{approval['nodeId']}",
                {"decision": "approve", "comment": "approved by aob demo"},
                202,
            )
        if run["status"] not in TERMINAL_RUN_STATUSES:
            with console.status("waiting for the run…") as status:
                run = await api.wait_for_run(run_id, None, timeout, show)
        took = time.monotonic() - started

    console.print(timeline_table(run))
    console.print(nodes_table(run))
    console.print(versions_table(run))
    for line in agent_lines(run):
        console.print(line)
    colour = "green" if run["status"] == "COMPLETED" else "red"
    console.print(
        f"run [bold]{run_id}[/] [bold {colour}]{run['status']}[/] in {took:.2f}s; "
        f"output {json.dumps(run['output'])}"
    )
    if run.get("error"):
        console.print(f"[red]{run['error']}[/]")
    return bool(run["status"] == "COMPLETED" and patch["status"] == "APPLIED")


async def _patch(api: ApiClient, run: dict, timeout: float) -> dict:  # type: ignore[type-arg]
    """Patch the waiting run through REST and wait for the coordinator's verdict."""
    run_id = run["id"]
    console.print(
        f"the demo patches the run (POST /v1/runs/{run_id}/patches): "
        f"{DEMO_PATCH_REASON}, with a node [bold]check[/] between write and done"
    )
    answer = await api.command(
        f"/v1/runs/{run_id}/patches",
        {"patch": DEMO_PATCH, "reason": DEMO_PATCH_REASON, "base_version": run["version"]},
        202,
    )
    started = time.monotonic()
    with console.status("waiting for the coordinator's verdict on the patch…"):
        while True:
            current = await api.run(run_id, answer["position"])
            patch = next(p for p in current["patches"] if p["id"] == answer["patch_id"])
            if patch["status"] != "SUBMITTED":
                break
            if time.monotonic() - started > timeout:
                raise CLIError(f"patch {answer['patch_id']} was not judged in {timeout:.0f}s")
            await asyncio.sleep(0.2)
    if patch["status"] == "APPLIED":
        console.print(
            f"patch applied: the run went from version {patch['fromVersion'][:12]} to "
            f"{patch['toVersion'][:12]} (added {', '.join(patch['addedNodes'])})"
        )
    else:
        reasons = "; ".join(patch["rejectedReasons"])
        console.print(f"[red]patch rejected: {escape(reasons)}[/]")
    return patch  # type: ignore[no-any-return]


def agent_lines(run: dict) -> list[str]:  # type: ignore[type-arg]
    """What each agent node answered and the tokens it used."""
    lines = []
    for node in run["nodes"]:
        output = node.get("output")
        if node["type"] != "agent" or not isinstance(output, dict):
            continue
        usage = output.get("usage") or {}
        text = escape(str(output.get("text")))  # the model's words, not markup
        lines.append(
            f"agent [bold]{node['id']}[/] ({output.get('model')}, {output.get('turns')} "
            f"turn(s), {usage.get('total_tokens', 0)} tokens: {usage.get('prompt_tokens', 0)} "
            f"prompt, {usage.get('completion_tokens', 0)} completion, "
            f"{usage.get('cached_tokens', 0)} cached) answered:\n  {text}"
        )
    return lines


def demo(
    timeout: float = typer.Option(60.0, help="Seconds to wait for the run to finish."),
) -> None:
    """Publish the example workflows and run one end to end, printing its timeline."""
    if not asyncio.run(_demo(Settings(), timeout)):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(demo)
