"""Workers: stateless executors of node tasks (``python -m workers``).

``workers.runtime`` consumes ``aob.tasks.<type>``; ``workers.execute`` runs one task and
reports it as events; ``workers.handlers`` holds what each built-in node type does and
``workers.builtins`` which types those are. A user's own node types run on the same runtime
through the worker SDK (``aob``), which also serves the built-in ones (``aob.serving``).
"""
