"""How `aob runs show` and the timeline print a run's patches."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from cli.patch_tables import rejected_table, versions_table
from cli.timeline import timeline_table

V0, V1 = "a" * 64, "b" * 64
RUN: dict[str, Any] = {
    "version": V1,
    "patches": [
        {
            "id": "p-good-0000000000",
            "status": "APPLIED",
            "reason": "add a summary step",
            "rejectedReasons": [],
            "submittedBy": {"kind": "agent", "id": "r1/write"},
            "addedNodes": ["summary"],
            "changedNodes": ["done"],
            "removedNodes": [],
        },
        {
            "id": "p-bad-11111111111",
            "status": "REJECTED",
            "reason": "drop start",
            "rejectedReasons": ["node 'start' has already run", "the graph would have a cycle"],
            "submittedBy": {"kind": "user", "id": "key-7"},
            "addedNodes": [],
            "changedNodes": [],
            "removedNodes": [],
        },
    ],
    "versions": [
        {"seq": 0, "version": V0, "patchId": None},
        {"seq": 1, "version": V1, "patchId": "p-good-0000000000"},
    ],
    "events": {
        "edges": [
            {
                "node": {
                    "type": "run.patch_submitted",
                    "occurredAt": "2026-01-01T00:00:00+00:00",
                    "actor": {"kind": "agent", "id": "r1/write", "tenant": "t"},
                    "payload": {
                        "patch": [{}, {}],
                        "reason": "add a summary step",
                        "node_id": "write",
                    },
                }
            },
            {
                "node": {
                    "type": "run.patch_applied",
                    "occurredAt": "2026-01-01T00:00:01+00:00",
                    "actor": {"kind": "system", "id": "coordinator", "tenant": "t"},
                    "payload": {
                        "to_version": V1,
                        "added_nodes": ["summary"],
                        "changed_nodes": ["done"],
                        "removed_nodes": [],
                    },
                }
            },
            {
                "node": {
                    "type": "run.patch_rejected",
                    "occurredAt": "2026-01-01T00:00:02+00:00",
                    "actor": {"kind": "system", "id": "coordinator", "tenant": "t"},
                    "payload": {"reasons": ["node 'start' has already run"]},
                }
            },
        ]
    },
}


def _text(table: Table | None) -> str:
    assert table is not None
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def test_the_chain_of_versions_names_each_patch_its_author_and_reason() -> None:
    text = _text(versions_table(RUN))
    assert V0[:12] in text and "submitted" in text
    assert f"{V1[:12]} (current)" in text
    assert "p-good-00000" in text and "agent r1/write" in text and "add a summary step" in text
    assert "+summary ~done" in text


def test_rejected_patches_are_listed_with_every_reason() -> None:
    text = _text(rejected_table(RUN))
    assert "user key-7" in text and "drop start" in text
    assert "• node 'start' has already run" in text and "• the graph would have a cycle" in text
    assert rejected_table({"patches": RUN["patches"][:1]}) is None


def test_the_timeline_reads_patch_events() -> None:
    text = _text(timeline_table(RUN))
    assert "by agent r1/write: 'add a summary step' (2 ops)" in text
    assert f"→ version {V1[:12]} +summary ~done" in text
    assert "rejected: node 'start' has already run" in text


def test_the_cli_run_query_is_valid_against_the_schema() -> None:
    from graphql import parse, validate

    from cli.api_client import RUN_QUERY
    from query_api.schema import schema

    assert validate(schema._schema, parse(RUN_QUERY)) == []
