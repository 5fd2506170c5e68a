"""The publish-time rules of a node's concurrency key (``"concurrency": {"key", "limit"}``).

The key is a template over the run context, rendered by the worker before an attempt starts.
Two rules are checked here, on Jinja's parse tree, so that a broken key fails the publish and
not every run: it must parse, and it may not read ``secrets``. The rendered key is shown to
people (a waiting node's reason names it) and stored in PostgreSQL in clear, so a secret in
it would leak; the worker renders it without secrets in its context anyway.
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, TemplateSyntaxError, nodes

from schemas.secret_refs import SECRETS_VARIABLE

# Parsing needs an environment but no sandbox: nothing is rendered here.
_PARSER = Environment(autoescape=False)  # noqa: S701 - parse only, never rendered


def concurrency_key_reasons(node_id: str, key: str) -> list[str]:
    """What is wrong with node ``node_id``'s concurrency key template (empty: nothing)."""
    return [f"node {node_id!r}: concurrency.key {reason}" for reason in _reasons(key)]


@lru_cache(maxsize=1024)
def _reasons(key: str) -> tuple[str, ...]:
    try:
        tree = _PARSER.parse(key)
    except TemplateSyntaxError as e:
        return (f"is not a valid template: {e.message} (line {e.lineno})",)
    if any(n.name == SECRETS_VARIABLE for n in tree.find_all(nodes.Name)):
        return (
            "may not read secrets: the rendered key is shown where the node waits and "
            "stored in clear",
        )
    return ()
