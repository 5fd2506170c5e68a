"""Workers: stateless executors of node tasks (``python -m workers``).

``workers.runtime`` consumes ``aob.tasks.<type>``; ``workers.execute`` runs one task and
reports it as events; ``workers.handlers`` holds what each node type does.
"""
