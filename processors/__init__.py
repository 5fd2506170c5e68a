"""The coordinator: the single writer of decisions for a run (DESIGN.md, processors).

``run_model`` is the pure decider (state, evolve, decide) with no I/O at all;
``processors.app``, ``processors.coordinator`` (the loop, with ``processors.outbox``: what it
sends and what the broker answered) and ``processors.agent`` (its wiring into faust) are the
faust-streaming adapter around it; ``python -m processors`` runs the worker.
"""
