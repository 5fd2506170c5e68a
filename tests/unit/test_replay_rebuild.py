"""The pure parts of a projection rebuild: names, gaps, the swap's DDL, the CLI's answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from projections.runner import TOPICS
from read_model.offsets import DEFAULT_PROJECTION
from replay.errors import RebuildFailed
from replay.rebuild import (
    REBUILD_PREFIX,
    RETIRED_PREFIX,
    Rebuilt,
    behind,
    schema_names,
    swap_statements,
    topics_of,
)


def test_the_default_projection_reads_the_event_topics() -> None:
    assert topics_of(DEFAULT_PROJECTION) == TOPICS


def test_an_unknown_projection_names_the_known_ones() -> None:
    with pytest.raises(
        RebuildFailed, match=f"no projection named 'nope'; known: {DEFAULT_PROJECTION}"
    ):
        topics_of("nope")


def test_schema_names_share_the_token_and_are_plain_identifiers() -> None:
    rebuilt, retired = schema_names("0a1b2c3d")
    assert (rebuilt, retired) == (f"{REBUILD_PREFIX}0a1b2c3d", f"{RETIRED_PREFIX}0a1b2c3d")


def test_behind_lists_only_partitions_short_of_their_target() -> None:
    positions = {("a", 0): 10, ("a", 1): 5}
    targets = {("a", 0): 10, ("a", 1): 8, ("b", 0): 3}
    assert behind(positions, targets) == {("a", 1): 3, ("b", 0): 3}
    assert behind(positions, {("a", 0): 9}) == {}  # ahead of a target is fine


def test_the_swap_moves_every_live_table_out_before_any_rebuilt_one_comes_in() -> None:
    statements = swap_statements(
        "public", "aob_rebuild_x", "aob_retired_x", ["runs", "approvals"], ["runs", "api_keys"]
    )
    assert statements == [
        'CREATE SCHEMA "aob_retired_x"',
        'ALTER TABLE "public"."runs" SET SCHEMA "aob_retired_x"',
        'ALTER TABLE "aob_rebuild_x"."approvals" SET SCHEMA "public"',
        'ALTER TABLE "aob_rebuild_x"."runs" SET SCHEMA "public"',
    ]


def test_the_swap_never_moves_a_live_table_outside_the_rebuilt_set() -> None:
    statements = swap_statements("public", "r", "t", ["runs"], ["api_keys", "runs_registry"])
    assert not any("api_keys" in s or "runs_registry" in s for s in statements)


def test_the_json_answer_has_the_documented_keys() -> None:
    done = Rebuilt(
        DEFAULT_PROJECTION, events=300, records=310, seconds=1.5, schema="public", tables=("runs",)
    )
    assert done.as_json() == {
        "projection": DEFAULT_PROJECTION,
        "events": 300,
        "records": 310,
        "seconds": 1.5,
        "events_per_second": 200.0,
        "schema": "public",
        "tables": ["runs"],
        "swapped": True,
    }


def test_the_cli_refuses_an_unknown_projection_in_one_line() -> None:
    argv = [sys.executable, "-c", "from cli.main import app; app()", "replay", "projections"]
    result = subprocess.run(
        [*argv, "--name", "nope"], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert (
        result.stderr.strip() == f"error: no projection named 'nope'; known: {DEFAULT_PROJECTION}"
    )
