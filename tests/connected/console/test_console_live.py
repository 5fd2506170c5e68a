"""The console in a real browser against the running system: sign in, watch a run finish
without a reload, approve by clicking, see a patch's node appear, go back with the slider
and fork from there, and see the APIs' reasons for a wrong key and a bad input.

Each step leaves a screenshot in the folder the tests print. Two figures are measured and
printed, not asserted on: how long a 500-node run takes to draw, and how long a run's
status change takes to show after its event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients

pytestmark = pytest.mark.connected

# Long enough for a busy machine (2 cores, a whole stack) to move a run along.
STEP_MS = 60_000

RUN = "query Run($id: ID!, $after: String) { run(id: $id, after: $after) { status } }"
EVENTS = """query E($id: ID!) { run(id: $id) { events(first: 500) {
  edges { node { seq type occurredAt runStatus } } } } }"""


def reviewed() -> dict[str, Any]:
    """prepare -> review (hitl) -(approved)-> publish; -(rejected)-> drop."""
    return {
        "nodes": [
            {"id": "prepare", "type": "transform", "config": {"output": {"items": 3}}},
            {
                "id": "review",
                "type": "hitl",
                "config": {"prompt": "Publish {{ nodes.prepare.output.items }} items?"},
            },
            {"id": "publish", "type": "noop"},
            {"id": "drop", "type": "noop"},
        ],
        "edges": [
            {"from": "prepare", "to": "review"},
            {"from": "review", "to": "publish", "when": "approved"},
            {"from": "review", "to": "drop", "when": "rejected"},
        ],
    }


def slow(url: str) -> dict[str, Any]:
    """start -> wait (an http call that answers after a few seconds) -> done."""
    return {
        "nodes": [
            {"id": "start", "type": "transform", "config": {"output": {"ok": True}}},
            {"id": "wait", "type": "http", "config": {"method": "GET", "url": url}},
            {"id": "done", "type": "noop"},
        ],
        "edges": [{"from": "start", "to": "wait"}, {"from": "wait", "to": "done"}],
    }


def fan_out(width: int) -> dict[str, Any]:
    """One root and ``width`` nodes after it: ``width + 1`` nodes."""
    nodes: list[dict[str, Any]] = [{"id": "root", "type": "noop"}]
    nodes += [{"id": f"n{i:03d}", "type": "noop"} for i in range(width)]
    edges = [{"from": "root", "to": f"n{i:03d}"} for i in range(width)]
    return {"nodes": nodes, "edges": edges}


@pytest.fixture
async def client(services: Settings, api_key: str) -> AsyncIterator[RunClient]:
    async with http_clients(services, api_key) as (rest, gql):
        yield RunClient(rest, gql, RUN)


@pytest.fixture
async def page(browser: Browser, services: Settings) -> AsyncIterator[Page]:
    async with httpx.AsyncClient(base_url=services.query_api_url) as http:
        served = await http.get("/console/")
    assert served.status_code == 200, f"the console is not served: {served.text}"
    context = await browser.new_context(
        base_url=services.query_api_url, viewport={"width": 1440, "height": 900}
    )
    p = await context.new_page()
    yield p
    await context.close()


async def sign_in(page: Page, key: str) -> None:
    await page.goto("/console/")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Runs")).to_be_visible()


def run_status(page: Page) -> Any:
    return page.locator("h1 [data-testid=status]")


def dag_node(page: Page, node_id: str) -> Any:
    return page.locator(f'[data-testid=dag-node][data-node-id="{node_id}"]')


async def shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=False)


def report(pytestconfig: pytest.Config, line: str) -> None:
    with pytestconfig.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\n{line}")


async def test_sign_in_and_watch_a_run_complete_without_reload(
    page: Page,
    client: RunClient,
    api_key: str,
    live_http_target: Any,
    screenshots: Path,
    pytestconfig: pytest.Config,
) -> None:
    # A wrong key: the query API's reason, not a blank page.
    await page.goto("/console/")
    await page.get_by_label("API key").fill("aob_not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("missing or unknown API key")
    await shot(page, screenshots, "01-wrong-key")

    await sign_in(page, api_key)
    host, port = live_http_target.host, live_http_target.port
    # RUNNING for 8 s: time for the list to show it and its page to open on a busy machine.
    run_id, _ = await client.submit("slow", slow(f"http://{host}:{port}/sleep?s=8"))
    # The list picks the run up by itself.
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    await expect(row).to_be_visible(timeout=STEP_MS)
    await shot(page, screenshots, "02-runs-list")
    # Search by id and by workflow; a search that matches nothing says so.
    search = page.get_by_label("search runs")
    await search.fill("no-such-run")
    await expect(page.get_by_text("No runs match.")).to_be_visible()
    await search.fill(run_id)
    await expect(row).to_be_visible()
    await search.fill("slow")
    await expect(row).to_be_visible()
    await row.get_by_role("link", name=run_id).click()

    # A marker that a reload would lose: the page must follow the run by itself.
    await page.evaluate("window.__notReloaded = true")
    await expect(run_status(page)).to_have_text("RUNNING", timeout=STEP_MS)
    await expect(dag_node(page, "wait")).to_have_attribute("data-status", "RUNNING")
    await shot(page, screenshots, "03-run-running")
    # When the page shows COMPLETED, by the browser's clock (the same machine's as the
    # services').
    await page.evaluate(
        """() => {
          const seen = () => document.querySelector('h1 [data-testid=status]')?.textContent;
          new MutationObserver((_, obs) => {
            if (seen() !== 'COMPLETED') return;
            window.__completedShownAt = Date.now();
            obs.disconnect();
          }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }"""
    )
    await expect(run_status(page)).to_have_text("COMPLETED", timeout=STEP_MS)
    await expect(dag_node(page, "done")).to_have_attribute("data-status", "SUCCEEDED")
    assert await page.evaluate("window.__notReloaded === true")
    await shot(page, screenshots, "04-run-completed")

    shown_ms = await page.evaluate("window.__completedShownAt")
    events = (await client.query(EVENTS, {"id": run_id}))["run"]["events"]["edges"]
    completed = next(e["node"] for e in events if e["node"]["type"] == "run.completed")
    at_ms = datetime.fromisoformat(completed["occurredAt"]).timestamp() * 1000
    report(
        pytestconfig,
        f"console: run.completed shown {shown_ms - at_ms:.0f} ms after the event occurred",
    )


async def test_invalid_input_shows_the_reason(
    page: Page, client: RunClient, api_key: str, screenshots: Path
) -> None:
    r = await client.rest.post(
        "/v1/workflows",
        json={
            "name": "tiny",
            "definition": {
                "nodes": [{"id": "a", "type": "hitl", "config": {"prompt": "{{ input.topic }}?"}}],
                "edges": [],
            },
        },
    )
    assert r.status_code == 201, r.text
    await sign_in(page, api_key)
    await page.get_by_role("link", name="Workflows").click()
    await page.get_by_role("link", name="tiny").click()
    await expect(dag_node(page, "a")).to_be_visible()
    field = page.get_by_label("Input (JSON)")
    await field.fill('{"topic": ')
    await page.get_by_role("button", name="Submit run").click()
    await expect(page.get_by_role("alert")).to_contain_text("invalid JSON")
    # Valid JSON the command API refuses (nested deeper than its limit): its 422 and reason.
    await field.fill("[" * 70 + "]" * 70)
    await page.get_by_role("button", name="Submit run").click()
    await expect(page.get_by_role("alert")).to_contain_text("422")
    await expect(page.get_by_role("alert")).to_contain_text("nests deeper than 64 levels")
    await shot(page, screenshots, "05-invalid-input")
    # And a good one starts a run, whose page opens; it waits, and is cancelled from there.
    await field.fill('{"topic": "console"}')
    await page.get_by_role("button", name="Submit run").click()
    await expect(page.get_by_test_id("approval")).to_contain_text("console?", timeout=STEP_MS)
    await page.get_by_label("cancel reason").fill("not needed")
    await page.get_by_role("button", name="Cancel run").click()
    await expect(run_status(page)).to_have_text("CANCELLED", timeout=STEP_MS)


async def test_approve_patch_go_back_and_fork(
    page: Page, services: Settings, client: RunClient, api_key: str, screenshots: Path
) -> None:
    run_id, _ = await client.submit("reviewed", reviewed())
    await sign_in(page, api_key)

    # The inbox lists the waiting approval.
    await page.get_by_role("link", name="Approvals").click()
    item = page.locator("[data-testid=inbox-item]", has_text=run_id)
    await expect(item).to_contain_text("Publish 3 items?", timeout=STEP_MS)
    await item.get_by_role("link", name=run_id).click()
    await expect(run_status(page)).to_have_text("WAITING", timeout=STEP_MS)
    await expect(dag_node(page, "review")).to_have_attribute("data-status", "WAITING")

    # A patch through REST: its node appears in the DAG, live.
    r = await client.rest.post(
        f"/v1/runs/{run_id}/patches",
        json={
            "reason": "log the items",
            "patch": [
                {
                    "op": "add",
                    "path": "/nodes/-",
                    "value": {"id": "audit", "type": "transform", "config": {"output": {"n": 1}}},
                },
                {"op": "add", "path": "/edges/-", "value": {"from": "prepare", "to": "audit"}},
            ],
        },
    )
    assert r.status_code == 202, r.text
    await expect(dag_node(page, "audit")).to_have_attribute(
        "data-status", "SUCCEEDED", timeout=STEP_MS
    )
    await expect(page.locator("[data-testid=patch]")).to_contain_text("+ audit")
    # The version it made, as a diff of the definition.
    versions = page.get_by_test_id("versions")
    await expect(versions).to_contain_text("+ node audit (transform)")
    await expect(versions).to_contain_text("+ edge prepare → audit")
    await shot(page, screenshots, "06-patched")

    # A second browser on the inbox, its timers stopped (a clock is its context's): it still
    # offers the decision after this one has taken it, and must show the refusal that follows.
    other = await page.context.browser.new_context(  # type: ignore[union-attr]
        base_url=services.query_api_url, viewport={"width": 1440, "height": 900}
    )
    inbox = await other.new_page()
    await inbox.clock.install()
    await sign_in(inbox, api_key)  # the key is kept per tab
    await inbox.get_by_role("link", name="Approvals").click()
    stale = inbox.locator("[data-testid=inbox-item]", has_text=run_id)
    await expect(stale).to_contain_text("Publish 3 items?", timeout=STEP_MS)
    await inbox.clock.pause_at(time.time() + 1)  # its polling stops here

    # Approve by clicking, with a comment: the run goes on down the approved branch.
    approval = page.locator("[data-testid=approval]")
    await expect(approval).to_contain_text("Publish 3 items?")
    await approval.get_by_label("comment for review").fill("looks right")
    await shot(page, screenshots, "07-approval")
    await approval.get_by_role("button", name="Approve").click()
    await expect(run_status(page)).to_have_text("COMPLETED", timeout=STEP_MS)
    await expect(dag_node(page, "publish")).to_have_attribute("data-status", "SUCCEEDED")
    await expect(dag_node(page, "drop")).to_have_attribute("data-status", "SKIPPED")
    await expect(page.get_by_test_id("approvals")).to_contain_text("looks right")
    # The node panel, opened from the keyboard: config, attempts, the output on demand.
    await page.locator(".react-flow__node", has=dag_node(page, "review")).focus()
    await page.keyboard.press("Enter")
    panel = page.get_by_test_id("node-panel")
    await expect(panel).to_contain_text("Publish {{ nodes.prepare.output.items }} items?")
    await panel.get_by_role("button", name="Load output").click()
    await expect(panel).to_contain_text('"decision": "approved"')
    await shot(page, screenshots, "08-approved")

    # The stale tab rejects: the command API accepts it, the coordinator refuses it, and
    # the tab shows why.
    await stale.get_by_role("button", name="Reject").click()
    await inbox.clock.resume()
    await expect(stale.get_by_role("alert")).to_contain_text(
        "refused to reject: the run is COMPLETED: it takes no more decisions", timeout=STEP_MS
    )
    await inbox.screenshot(path=str(screenshots / "08b-refused.png"))
    await other.close()

    # Back to the event just before the decision: the DAG as it was, review waiting, no
    # patch yet if it came later.
    events = page.locator("[data-testid=timeline] tr")
    await expect(events.filter(has_text="run.completed")).to_have_count(1)
    texts = await events.all_inner_texts()
    requested = next(i for i, t in enumerate(texts) if "run.approval_requested" in t) + 1
    slider = page.get_by_test_id("slider")
    await slider.focus()
    await slider.fill(str(requested))
    await expect(page.get_by_test_id("at-seq")).to_have_text(str(requested))
    await expect(dag_node(page, "review")).to_have_attribute("data-status", "WAITING")
    await expect(dag_node(page, "publish")).to_have_attribute("data-status", "PENDING")
    await expect(dag_node(page, "audit")).to_have_count(0)  # the patch came later
    # The keyboard moves it too: one event on.
    await page.keyboard.press("ArrowRight")
    await expect(page.get_by_test_id("at-seq")).to_have_text(str(requested + 1))
    await page.keyboard.press("ArrowLeft")
    await shot(page, screenshots, "09-back-in-time")

    # Fork from there, and reject in the fork: it goes down the other branch.
    await page.get_by_label("New input").fill('{"why": "the other branch"}')
    await page.get_by_role("button", name=f"Fork from here (event {requested})").click()
    await expect(page.locator("p.meta")).to_contain_text(f"forked from {run_id}")
    await expect(page.get_by_test_id("run-io")).to_contain_text("the other branch")
    fork_approval = page.locator("[data-testid=approval]")
    await expect(fork_approval).to_contain_text("Publish 3 items?", timeout=STEP_MS)
    await fork_approval.get_by_role("button", name="Reject").click()
    await expect(run_status(page)).to_have_text("COMPLETED", timeout=STEP_MS)
    await expect(dag_node(page, "drop")).to_have_attribute("data-status", "SUCCEEDED")
    await expect(dag_node(page, "publish")).to_have_attribute("data-status", "SKIPPED")
    # Its history starts with the fork.
    await expect(page.get_by_test_id("timeline")).to_contain_text("run.forked")
    await shot(page, screenshots, "10-fork-rejected")


async def test_a_500_node_run_draws(
    page: Page,
    services: Settings,
    bulk_api_key: str,
    screenshots: Path,
    pytestconfig: pytest.Config,
) -> None:
    async with http_clients(services, bulk_api_key) as (rest, gql):
        client = RunClient(rest, gql, RUN)
        run_id, position = await client.submit("wide", fan_out(499))
        await client.until(run_id, lambda r: None, after=position)
    await sign_in(page, bulk_api_key)
    started = time.perf_counter()
    await page.goto(f"/console/runs/{run_id}")
    await expect(page.locator("[data-testid=dag-node]")).to_have_count(500, timeout=STEP_MS)
    drawn = time.perf_counter() - started
    await shot(page, screenshots, "11-500-nodes")
    report(pytestconfig, f"console: a 500-node run drawn {drawn * 1000:.0f} ms after navigation")
    await expect(run_status(page)).to_have_text("COMPLETED", timeout=STEP_MS)
