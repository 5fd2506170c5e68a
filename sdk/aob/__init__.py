"""AOB's worker SDK: write a node type as an async Python function, serve it with ``aob worker``.

::

    from pydantic import BaseModel

    from aob import Job, NonRetryable, node


    class ShoutConfig(BaseModel):
        text: str


    @node("shout", config=ShoutConfig, description="Upper-cases a text.")
    async def shout(job: Job[ShoutConfig]) -> dict[str, str]:
        if not job.config.text:
            raise NonRetryable("there is nothing to shout")
        await job.progress("shouting")
        return {"text": job.config.text.upper()}

``aob worker shout.py`` (or ``python -m aob.worker shout.py``) registers the module's types
with the command API and serves them; a workflow then uses ``"type": "shout"``.

- ``aob.nodes``: ``@node`` and what a declared type is (``NodeDefinition``);
- ``aob.job``: ``Job``, what the function is called with;
- ``aob.errors``: ``NonRetryable`` and ``Retryable`` failures;
- ``aob.testing``: ``attempt``, a node's code run in a test, through the runtime, without a
  stack;
- ``aob.worker``: the command that serves a module; ``aob.serving``, the serving itself,
  shared with the built-in workers; ``aob.registration``, the registry's part of it.

This package imports only what a worker needs: the worker runtime (``workers``) and the wire
contract (``schemas``), never the services (no faust, FastAPI or Strawberry).
"""

from aob.errors import NodeError, NonRetryable, Retryable
from aob.job import Job
from aob.nodes import NodeDefinition, node

__all__ = ["Job", "NodeDefinition", "NodeError", "NonRetryable", "Retryable", "node"]
