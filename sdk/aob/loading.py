"""The module a worker serves, named as its user names it: a dotted module name
(``shop.nodes``) or the path of a Python file (``shout.py``, ``nodes/shout.py``), both found
from the current directory first, as ``python -m`` and ``python file.py`` would."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from aob.nodes import NodeDefinition, nodes_in


class LoadError(Exception):
    """The module cannot be found, or declares no node: the message says which."""


def load_nodes(target: str) -> tuple[ModuleType, list[NodeDefinition]]:
    """Import ``target`` and return it with the node types it declares (``@node``)."""
    module = load_module(target)
    try:
        nodes = nodes_in(module)
    except ValueError as e:
        raise LoadError(f"{target}: {e}") from None
    if not nodes:
        raise LoadError(
            f"{target} ({module.__file__}) declares no node type: decorate an async function "
            'with @node("name") (from aob import node)'
        )
    return module, nodes


def load_module(target: str) -> ModuleType:
    """Import ``target``: a ``.py`` file (or any path with a separator) or a dotted module
    name. An exception raised by the module's own code propagates as it is."""
    if target.endswith(".py") or os.sep in target or (os.altsep and os.altsep in target):
        return _load_file(Path(target))
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        # The target itself (or its package) is missing, not a module that it imports.
        if e.name is not None and (target == e.name or target.startswith(e.name + ".")):
            raise LoadError(
                f"no module named {target!r} in {cwd} or on the Python path (give a file as "
                "path/to/module.py, or a dotted module name)"
            ) from None
        raise


def _load_file(path: Path) -> ModuleType:
    file = path.resolve()
    if not file.is_file():
        raise LoadError(f"{path}: no such file")
    if file.suffix != ".py":
        raise LoadError(f"{path}: not a Python file (.py)")
    name = file.stem
    if not name.isidentifier():
        raise LoadError(f"{path}: {name!r} is not a valid module name")
    if name in sys.modules:
        raise LoadError(
            f"{path}: a module named {name!r} is imported already (by Python or by AOB); "
            "rename the file"
        )
    # Its folder goes first on the path, so that it imports its neighbours as a script would.
    sys.path.insert(0, str(file.parent))
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise LoadError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
