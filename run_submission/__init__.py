"""Starting a run: the one path every run start takes.

``POST /v1/runs``, a webhook's delivery, a schedule's firing and a ``subworkflow`` node's child
run all start runs through ``start_run``, so each is bound to its version, checked against
the tenant's limits, admitted, registered and appended alike. It lives apart from the REST
routes because the coordinator's schedule clock and the workers' subworkflow node start runs
too, and neither serves HTTP: nothing here imports the web framework. It uses the command
side's own tables (``command_api.registry``), budgets and admission, and raises the command
side's errors (``command_api.errors``), which the REST API maps to HTTP and the other callers
turn into a reason (a skipped schedule moment, a failed node).
"""

from __future__ import annotations

from run_submission.context import CompiledVersion, SubmissionContext, SubmissionPorts
from run_submission.submit import (
    ParentLink,
    append_event,
    check_input_size,
    encode_record,
    start_run,
)
from run_submission.versions import VersionCache

__all__ = [
    "CompiledVersion",
    "ParentLink",
    "SubmissionContext",
    "SubmissionPorts",
    "VersionCache",
    "append_event",
    "check_input_size",
    "encode_record",
    "start_run",
]
