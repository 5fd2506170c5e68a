"""``@node``: an async function becomes a node type that workers serve.

::

    class ShoutConfig(BaseModel):
        text: str

    @node("shout", config=ShoutConfig, description="Upper-cases a text.")
    async def shout(job: Job[ShoutConfig]) -> dict[str, str]:
        return {"text": job.config.text.upper()}

The decorated name is a ``NodeDefinition``: the worker runtime's handler for the type (it
takes the runtime's attempt, ``workers.handlers.base.Job``), and what ``aob worker`` registers
(name, the config's and the output's JSON Schema, description). Every attempt goes:

1. the config's templates are rendered over the run context (strings with ``{{ … }}``; a
   template error fails the node without retry), unless the node renders its own
   (``render_config=False``, as the built-in ``transform``, ``condition`` and ``hitl`` do:
   their templates are theirs to interpret);
2. the rendered config is validated by the ``config`` model, if any: a config it refuses
   fails the node without retry, with pydantic's messages (``config is not a valid
   ShoutConfig: text: Field required``);
3. the function runs with a ``Job`` (``aob.job``) under the attempt's time limit;
4. what it returns is the node's output: a JSON value, or a pydantic model (dumped as
   JSON). With an ``output`` model the value is validated against it first, and one it
   refuses fails the node without retry. The runtime then stores it as it stores every
   output: inline in the event when small, else in the CAS.

Failures are classified as for every handler (``workers.outcome``, ``aob.errors``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from aob.job import Job
from node_types.registry import NODE_TYPE_NAME_PATTERN
from templating import renders
from workers.errors import ConfigError, OutputRefused
from workers.handlers.base import WAITING
from workers.handlers.base import Job as Attempt

NodeFunction = Callable[[Job[Any]], Awaitable[Any]]


@dataclass(frozen=True, eq=False)
class NodeDefinition:
    """One node type: its name, its code, and what its config and output look like."""

    name: str
    function: NodeFunction = field(repr=False)
    config_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    description: str = ""
    render_config: bool = True

    @property
    def config_schema(self) -> dict[str, Any]:
        """The JSON Schema of the node's config (``{}``: any object)."""
        return self.config_model.model_json_schema() if self.config_model else {}

    @property
    def output_schema(self) -> dict[str, Any] | None:
        return self.output_model.model_json_schema() if self.output_model else None

    async def __call__(self, attempt: Attempt, /) -> Any:
        """Run one attempt (the worker runtime's handler protocol, ``workers.handlers``)."""
        config = await self._config(attempt)
        result = await self.function(Job(attempt, config))
        if result is WAITING:  # the node now waits outside the worker (a built-in's hitl)
            return result
        return self._output(result)

    async def _config(self, attempt: Attempt) -> Any:
        config: Any = attempt.config
        if self.render_config:
            config = await renders.render_value(config, attempt.template_context)
        if self.config_model is None:
            return config
        try:
            return self.config_model.model_validate(config)
        except ValidationError as e:
            raise ConfigError(
                f"config is not a valid {self.config_model.__name__}: {problems(e)}"
            ) from None

    def _output(self, result: Any) -> Any:
        if self.output_model is not None:
            try:
                if not isinstance(result, self.output_model):
                    result = self.output_model.model_validate(result)
            except ValidationError as e:
                raise OutputRefused(
                    f"output is not a valid {self.output_model.__name__}: {problems(e)}"
                ) from None
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return result


def node(
    name: str,
    *,
    config: type[BaseModel] | None = None,
    output: type[BaseModel] | None = None,
    description: str | None = None,
    render_config: bool = True,
) -> Callable[[NodeFunction], NodeDefinition]:
    """Declare the decorated ``async def f(job)`` as node type ``name`` (see the module
    doc). ``description`` defaults to the first paragraph of the function's docstring."""
    if not isinstance(name, str) or not re.fullmatch(NODE_TYPE_NAME_PATTERN, name):
        raise ValueError(
            f"node type name {name!r} must match {NODE_TYPE_NAME_PATTERN}: a lower-case "
            "letter, then up to 47 lower-case letters, digits, '_' or '-'"
        )
    for what, model in (("config", config), ("output", output)):
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"@node({name!r}): {what} must be a pydantic model class")

    def declare(function: NodeFunction) -> NodeDefinition:
        if not inspect.iscoroutinefunction(function):
            raise TypeError(
                f"@node({name!r}) decorates {getattr(function, '__name__', function)!r}, "
                "which is not an async function: write `async def`"
            )
        return NodeDefinition(
            name=name,
            function=function,
            config_model=config,
            output_model=output,
            description=_first_paragraph(function) if description is None else description,
            render_config=render_config,
        )

    return declare


def nodes_in(module: ModuleType) -> list[NodeDefinition]:
    """The node types a module declares (its ``@node`` functions), in name order."""
    return unique(v for v in vars(module).values() if isinstance(v, NodeDefinition))


def unique(definitions: Iterable[NodeDefinition]) -> list[NodeDefinition]:
    """``definitions`` in name order, each once; ``ValueError`` if two share a name."""
    by_name: dict[str, NodeDefinition] = {}
    for d in definitions:
        other = by_name.setdefault(d.name, d)
        if other is not d:
            raise ValueError(
                f"node type {d.name!r} is declared twice: by {_where(other)} and by {_where(d)}"
            )
    return [by_name[n] for n in sorted(by_name)]


def problems(error: ValidationError) -> str:
    """pydantic's messages, one per problem, each after the path of what it is about."""
    parts = []
    for e in error.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']}" if where else str(e["msg"]))
    return "; ".join(parts)


def _first_paragraph(function: Callable[..., Any]) -> str:
    doc = inspect.getdoc(function) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def _where(d: NodeDefinition) -> str:
    f = d.function
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', '?')}"
