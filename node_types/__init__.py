"""The node-type registry: the types a tenant's own workers serve, with their schemas, and
which workers are live for each (``node_types.registry``)."""

from node_types.registry import (
    BUILT_IN_TYPES,
    ENGINE,
    LIVE_WITHIN_S,
    NODE_TYPE_NAME_PATTERN,
    NodeType,
    NodeTypeRegistry,
    NodeTypeSpec,
    NodeTypeTaken,
)

__all__ = [
    "BUILT_IN_TYPES",
    "ENGINE",
    "LIVE_WITHIN_S",
    "NODE_TYPE_NAME_PATTERN",
    "NodeType",
    "NodeTypeRegistry",
    "NodeTypeSpec",
    "NodeTypeTaken",
]
