"""The GraphQL enums ``RunStatus`` and ``NodeStatus``: the run model's own enums, exposed.

The statuses are defined once, in ``run_model.state``; a read model row's status column holds
their values, so ``RunStatus(row["status"])`` reads one back.
"""

from __future__ import annotations

import strawberry

from run_model import NodeStatus, RunStatus

# strawberry.enum registers the class as a GraphQL enum (members in definition order, no
# description) and returns it unchanged, so these names are the run model's classes.
strawberry.enum(RunStatus, name="RunStatus")
strawberry.enum(NodeStatus, name="NodeStatus")

__all__ = ["NodeStatus", "RunStatus"]
