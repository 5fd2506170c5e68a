"""The read side's API: GraphQL (Strawberry) over the Postgres read models, per tenant.

Where things are:

- ``schema.py`` assembles the ``schema`` from the two roots, ``queries.py`` (``Query``) and
  ``subscriptions.py`` (``Subscription``; their loops are in ``live.py``).
- The GraphQL types, one module a concept: ``run_types.py`` (Run, ForkOrigin, RunFilter),
  ``node_types.py`` (NodeExecution, TokenUsage), ``event_types.py``, ``approval_types.py``,
  ``workflow_types.py``, ``patch_types.py`` (patches and a run's versions); ``statuses.py``
  exposes the run model's RunStatus and NodeStatus as GraphQL enums.
- ``pagination.py`` pages every connection (keyset, ``first``/``after``), over the opaque
  cursors of ``cursors.py``; ``rows.py`` builds a type from a read model row;
  ``loaders.py`` holds the per-request DataLoaders.
- ``db.py`` and ``fork_queries.py`` hold the SQL; ``app.py`` serves it all (README.md has
  the full table).
"""
