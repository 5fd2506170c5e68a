"""The isolated coordinator (``tests.connected.isolated``) for the coordinator's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.connected.isolated import (
    TASK_TYPES_USED,
    Isolated,
    attach_coordinator_log,
    isolated,
    producer,
    stop,
    wait_for_log,
)

__all__ = ["TASK_TYPES_USED", "Isolated", "isolated", "producer", "stop", "wait_for_log"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    attach_coordinator_log(item, outcome.get_result())
