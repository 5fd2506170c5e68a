"""Locks the GraphQL public surface (API.md): the printed SDL must match the snapshot.

A change to the schema must be deliberate. After changing it on purpose, regenerate the
snapshot and review the diff with the change:

    AOB_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_query_api_schema.py
"""

from __future__ import annotations

import os
from pathlib import Path

import run_model
from query_api.schema import schema

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "schema.graphql"


def test_sdl_matches_snapshot() -> None:
    sdl = schema.as_str() + "\n"
    if os.environ.get("AOB_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(sdl)
    assert SNAPSHOT.exists(), "no snapshot yet: run with AOB_UPDATE_SNAPSHOTS=1"
    assert sdl == SNAPSHOT.read_text(), (
        "the GraphQL schema changed; if on purpose, update tests/snapshots/schema.graphql "
        "with AOB_UPDATE_SNAPSHOTS=1 and document the change in API.md"
    )


def test_the_promised_names_are_there() -> None:
    # The snapshot catches any change; this spells out what API.md promises, so that a
    # careless snapshot update cannot drop it.
    sdl = schema.as_str()
    for needle in (
        "workflow(id: ID!): Workflow",
        "workflows(first: Int! = 20, after: String = null): WorkflowConnection!",
        "run(id: ID!, after: String = null): Run",
        "runs(filter: RunFilter = null, first: Int! = 20, after: String = null)",
        "events(first: Int! = 100, after: String = null): EventConnection!",
        "enum RunStatus {\n  PENDING\n  RUNNING\n  WAITING\n  COMPLETED\n  FAILED\n  CANCELLED\n}",
        "enum NodeStatus {\n  PENDING\n  SCHEDULED\n  RUNNING\n  WAITING\n  SUCCEEDED\n"
        "  FAILED\n  SKIPPED\n}",
        "hasNextPage: Boolean!",
        "endCursor: String",
        "outputRef: String",
        "waitingReason: String",
        "rejectedReasons: [String!]!",
        "decidedBy: String",
        "scalar JSON",
    ):
        assert needle in sdl, needle


def test_the_status_enums_are_the_run_models() -> None:
    # The statuses are defined once, in run_model; the GraphQL enums expose those classes.
    for name, cls in (("RunStatus", run_model.RunStatus), ("NodeStatus", run_model.NodeStatus)):
        definition = schema.get_type_by_name(name)
        assert getattr(definition, "wrapped_cls", None) is cls, name
