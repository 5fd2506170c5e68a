"""A run's patches for the terminal: its chain of versions, and the patches refused."""

from __future__ import annotations

from typing import Any

from rich.table import Table

SHORT = 12  # characters of a version hash or patch id: enough to tell them apart here


def short(value: str | None) -> str:
    return (value or "")[:SHORT]


def author(patch: dict[str, Any] | None) -> str:
    who = (patch or {}).get("submittedBy")
    return f"{who['kind']} {who['id']}" if who else "?"


def _changes(patch: dict[str, Any]) -> str:
    parts = [f"+{n}" for n in patch.get("addedNodes") or []]
    parts += [f"~{n}" for n in patch.get("changedNodes") or []]
    parts += [f"-{n}" for n in patch.get("removedNodes") or []]
    return " ".join(parts)


def versions_table(run: dict[str, Any]) -> Table:
    """Seq 0 is the version the run was submitted with; each later one names its patch."""
    patches = {p["id"]: p for p in run.get("patches") or []}
    table = Table(
        "seq", "version", "patch", "by", "why", "nodes", title="versions", title_justify="left"
    )
    for v in run.get("versions") or []:
        current = " (current)" if v["version"] == run["version"] else ""
        if v["patchId"] is None:
            table.add_row("0", short(v["version"]) + current, "", "", "submitted", "")
            continue
        patch = patches.get(v["patchId"], {})
        table.add_row(
            str(v["seq"]),
            short(v["version"]) + current,
            short(v["patchId"]),
            author(patch),
            patch.get("reason", ""),
            _changes(patch),
        )
    return table


def rejected_table(run: dict[str, Any]) -> Table | None:
    """The refused patches with every reason, or None when there are none."""
    refused = [p for p in run.get("patches") or [] if p["status"] == "REJECTED"]
    if not refused:
        return None
    table = Table("patch", "by", "why", "refused because", title="rejected patches")
    table.title_justify = "left"
    for p in refused:
        reasons = "\n".join(f"• {r}" for r in p.get("rejectedReasons") or [])
        table.add_row(short(p["id"]), author(p), p.get("reason", ""), reasons)
    return table


def patch_detail(kind: str, payload: dict[str, Any], actor: dict[str, Any] | None) -> str:
    """A timeline line for a patch event."""
    if kind == "run.patch_submitted":
        who = f"{actor['kind']} {actor['id']}" if actor else "?"
        ops = len(payload.get("patch") or [])
        return f"by {who}: {payload.get('reason', '')!r} ({ops} op{'s' if ops != 1 else ''})"
    if kind == "run.patch_applied":
        changes = _changes(
            {
                "addedNodes": payload.get("added_nodes"),
                "changedNodes": payload.get("changed_nodes"),
                "removedNodes": payload.get("removed_nodes"),
            }
        )
        return f"→ version {short(payload.get('to_version'))} {changes}".rstrip()
    if kind == "run.patch_rejected":
        return "rejected: " + "; ".join(payload.get("reasons") or [])
    return ""
