"""The NOTIFY channels the projector signals on, at the commit of every batch.

The projector sends them; the query API listens (``after:`` waiters, live subscriptions)
and a rebuild's swap sends one too. A channel name is the whole contract, so it is here,
not in the writer or in a reader.
"""

from __future__ import annotations

RUN_CHANNEL = "aob_run_changed"  # payload: the id of a run whose rows the batch changed
PROGRESS_CHANNEL = "aob_projection_progress"  # payload: the projection's name
