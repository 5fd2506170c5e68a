"""Published versions as runs are bound to them: the definition and its IR, read from the CAS
once and kept (versions are immutable, so a compiled IR never goes stale)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cas import ContentStore
from schemas import WorkflowIR

IR_CACHE_SIZE = 256


@dataclass(frozen=True)
class CompiledVersion:
    """A published version as a run is bound to it: the definition and its IR."""

    definition: dict[str, Any]
    ir: WorkflowIR


class VersionCache:
    """The recently used versions, by version, up to ``size``."""

    def __init__(self, size: int = IR_CACHE_SIZE) -> None:
        self.size = size
        self._versions: OrderedDict[str, CompiledVersion] = OrderedDict()

    def remember(self, compiled: CompiledVersion) -> None:
        version = compiled.ir.version
        self._versions[version] = compiled
        self._versions.move_to_end(version)
        while len(self._versions) > self.size:
            self._versions.popitem(last=False)

    async def load(
        self, cas: ContentStore, definition_ref: str, ir_ref: str, version: str
    ) -> CompiledVersion:
        """The version's definition and IR, from the CAS the first time (reads verify the
        hash), from memory after."""
        compiled = self._versions.get(version)
        if compiled is None:
            definition, ir = await asyncio.gather(
                cas.get_json(definition_ref), cas.get_json(ir_ref)
            )
            compiled = CompiledVersion(definition, WorkflowIR.model_validate(ir))
            self.remember(compiled)
        return compiled
