"""A run as tables for the terminal: its timeline of events, and its nodes (its versions
and patches are in ``patch_tables``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.table import Table

from cli.patch_tables import patch_detail


def event_detail(kind: str, payload: dict[str, Any], actor: dict[str, Any] | None = None) -> str:
    """What the timeline says of one event; an event of a map's item names the item."""
    detail = _detail(kind, payload, actor)
    item = payload.get("item")
    return f"item {item}: {detail}" if item is not None else detail


def _detail(kind: str, payload: dict[str, Any], actor: dict[str, Any] | None) -> str:
    if kind == "run.map_started":
        return (
            f"{payload.get('items')} items, at most {payload.get('max_parallel')} at once, "
            f"{payload.get('failure')}"
        )
    if kind.startswith("run.patch_"):
        return patch_detail(kind, payload, actor)
    if kind == "run.node_succeeded":
        if payload.get("output_inline"):
            return json.dumps(payload.get("output"))[:70]
        return str(payload.get("output_ref", ""))
    if kind in {"run.node_failed", "run.failed"}:
        return str(payload.get("error") or payload.get("reason") or "")
    if kind in {"run.node_skipped", "run.cancelled"}:
        return str(payload.get("reason") or "")
    if kind == "run.node_scheduled":
        return f"attempt {payload.get('attempt')} → {payload.get('task_topic')}"
    if kind == "run.node_started":
        return f"attempt {payload.get('attempt')} on {payload.get('worker')}"
    if kind == "run.node_queued":
        return f"attempt {payload.get('attempt')} waits: {payload.get('reason', '')}"
    if kind == "run.node_progress":
        fraction = payload.get("fraction")
        done = f" ({fraction:.0%})" if isinstance(fraction, int | float) else ""
        return f"{payload.get('message', '')}{done}"
    if kind == "run.warning":
        return str(payload.get("message", ""))
    return _approval_or_model_detail(kind, payload)


def _approval_or_model_detail(kind: str, payload: dict[str, Any]) -> str:
    if kind == "run.approval_requested":
        limit = payload.get("timeout_s")
        wait = f" (else {payload.get('default_outcome')} after {limit:g}s)" if limit else ""
        return f"{payload.get('prompt', '')!r}{wait}"
    if kind == "run.approval_submitted":
        return str(payload.get("decision", ""))
    if kind == "run.approval_decided":
        return f"{payload.get('decision')} by {payload.get('decided_by')}"
    if kind == "run.approval_refused":
        return f"refused: {payload.get('reason', '')}"
    if kind == "run.tool_called":
        return tool_call_detail(payload)
    if kind == "run.model_called":
        usage = payload.get("usage") or {}
        tools = ", ".join(payload.get("tool_calls") or []) or payload.get("finish_reason") or ""
        return f"turn {payload.get('turn')}: {usage.get('total_tokens', 0)} tokens → {tools}"
    return _budget_detail(kind, payload)


def tool_call_detail(payload: dict[str, Any]) -> str:
    """``http → ok in 12 ms`` or ``http → error: …``, with the attempt."""
    took = payload.get("duration_ms") or 0
    head = f"{payload.get('tool')} (attempt {payload.get('attempt')})"
    if payload.get("ok"):
        where = " → CAS" if payload.get("result_ref") else ""
        return f"{head} → ok in {took:.0f} ms{where}"
    return f"{head} → error: {payload.get('error') or ''}"


def _budget_detail(kind: str, payload: dict[str, Any]) -> str:
    if kind == "run.turn_requested":
        return f"may turn {payload.get('turn')} go?"
    if kind == "run.turn_granted":
        spent = payload.get("spent") or {}
        return f"turn {payload.get('turn')} granted ({spent.get('tokens', 0)} tokens spent)"
    if kind == "run.budget_exceeded":
        return str(payload.get("reason", ""))
    if kind == "run.budget_raised":
        bounds = payload.get("budget") or {}
        shown = ", ".join(f"{k} {bounds[k]}" for k in ("tokens", "usd") if bounds.get(k))
        return f"to {shown} by {payload.get('decided_by')}"
    return ""


def timeline_table(run: dict[str, Any]) -> Table:
    events = [e["node"] for e in run["events"]["edges"]]
    table = Table("+ms", "event", "node", "detail", title="timeline", title_justify="left")
    if not events:
        return table
    t0 = datetime.fromisoformat(events[0]["occurredAt"])
    for ev in events:
        payload = ev["payload"] or {}
        ms = (datetime.fromisoformat(ev["occurredAt"]) - t0).total_seconds() * 1000
        table.add_row(
            f"{ms:8.1f}",
            ev["type"],
            payload.get("node_id") or "",
            event_detail(ev["type"], payload, ev.get("actor")),
        )
    return table


def nodes_table(run: dict[str, Any]) -> Table:
    table = Table(
        "node", "type", "status", "attempts", "output / error", title="nodes", title_justify="left"
    )
    for n in run["nodes"]:
        shown = json.dumps(n["output"])[:80] if n["output"] is not None else (n["error"] or "")
        table.add_row(n["id"], n["type"], n["status"], str(n["attempts"]), shown)
        if n.get("childRunId"):  # a subworkflow node's child run, under it
            table.add_row("", "", "", "", f"child run {n['childRunId']}")
        for item in n.get("items") or []:  # a map node's items, under it
            out = item.get("output")
            shown = json.dumps(out)[:76] if out is not None else (item.get("error") or "")
            table.add_row(f"  [{item['index']}]", "", item["status"], str(item["attempts"]), shown)
    return table
