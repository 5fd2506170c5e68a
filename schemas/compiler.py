"""Validation of a definition's graph, and compilation to the IR.

Every rule broken is reported (not just the first), in words a person or a model can act on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from schemas.agent_tools import BUILT_IN_TOOLS, ToolEntryError, parse_tools
from schemas.canonical import canonical_json, sha256_hex
from schemas.concurrency_keys import concurrency_key_reasons
from schemas.errors import InvalidWorkflow
from schemas.ir import IREdge, IRNode, IRNodeType, WorkflowIR
from schemas.map_node import MAP, map_config_reasons
from schemas.node_type_configs import config_reasons
from schemas.secret_refs import SecretReferenceError, secret_references
from schemas.subworkflow_node import SUBWORKFLOW, subworkflow_config_reasons
from schemas.workflow import (
    EDGE_GUARDS,
    KNOWN_NODE_TYPES,
    NodeDef,
    RetryPolicy,
    WorkflowDefinition,
)


def definition_version(definition: WorkflowDefinition) -> str:
    """A version is the sha256 of the definition's canonical JSON."""
    return sha256_hex(canonical_json(definition.canonical()))


def validate_graph(
    definition: WorkflowDefinition, node_types: Mapping[str, IRNodeType] | None = None
) -> list[str]:
    """The graph rules the definition breaks; empty when it is valid.

    ``node_types`` are the registered types the definition may use besides the built-in
    ones (the publishing tenant's, or those a run already has): a node of one has its config
    checked against the type's schema."""
    registered = node_types or {}
    reasons: list[str] = []
    ids = [n.id for n in definition.nodes]
    types = {n.id: n.type for n in definition.nodes}
    seen: set[str] = set()
    for node_id in ids:
        if node_id in seen:
            reasons.append(f"node id {node_id!r} is used more than once")
        seen.add(node_id)
    for node in definition.nodes:
        if node.type in registered:
            schema = registered[node.type].config_schema
            reasons.extend(config_reasons(node.id, node.type, node.config, schema))
        elif node.type not in KNOWN_NODE_TYPES:
            reasons.append(_unknown_type(node, registered))
        if node.type == "hitl":
            reasons.extend(_hitl_config_reasons(node))
        if node.type == "agent":
            reasons.extend(agent_tools_reasons(node, registered))
        if node.type == "wait_event":
            reasons.extend(_wait_event_config_reasons(node))
        if node.type == MAP:
            reasons.extend(_map_config_reasons(node, registered))
        if node.type == SUBWORKFLOW:
            reasons.extend(subworkflow_config_reasons(node.id, node.config))
        try:  # secrets.NAME is read by the worker; any other way of reading secrets is not
            secret_references(node.config)
        except SecretReferenceError as e:
            reasons.append(f"node {node.id!r}: {e}")
        if node.concurrency is not None:
            reasons.extend(concurrency_key_reasons(node.id, node.concurrency.key))

    pairs: set[tuple[str, str]] = set()
    for i, edge in enumerate(definition.edges):
        where = f"edge {i} ({edge.from_} -> {edge.to})"
        missing = [end for end in (edge.from_, edge.to) if end not in types]
        for end in missing:
            reasons.append(f"{where} refers to node {end!r}, which does not exist")
        if missing:
            continue
        if edge.from_ == edge.to:
            reasons.append(f"{where} connects a node to itself")
        if (edge.from_, edge.to) in pairs:
            reasons.append(f"{where} is declared more than once")
        pairs.add((edge.from_, edge.to))
        allowed = EDGE_GUARDS.get(types[edge.from_])
        if allowed is None and edge.when is not None:
            reasons.append(
                f"{where} has guard when={edge.when!r}, but a {types[edge.from_]!r} node's "
                "edges take no guard"
            )
        if allowed is not None and edge.when not in allowed:
            reasons.append(
                f"{where} leaves a {types[edge.from_]!r} node and needs when= one of "
                f"{sorted(allowed)}, not {edge.when!r}"
            )
    if not reasons:
        cycle = find_cycle(ids, [(e.from_, e.to) for e in definition.edges])
        if cycle:
            reasons.append("the graph has a cycle: " + " -> ".join(cycle))
    return reasons


def agent_tools_reasons(node: NodeDef, registered: Mapping[str, IRNodeType]) -> list[str]:
    """What is wrong with an agent node's ``tools`` (``schemas.agent_tools``): an entry that
    is no tool, a bad MCP entry, or the name of a node type that is not registered (among
    ``registered``, the types the definition may use)."""
    try:
        tools = parse_tools(node.config.get("tools"))
    except ToolEntryError as e:
        return [f"node {node.id!r}: {e}"]
    return [
        f"node {node.id!r}: tool {name!r} is not a node type registered for this tenant "
        f"(register it with PUT /v1/node-types/{name}; built-in tools: "
        f"{', '.join(BUILT_IN_TOOLS)}; or an MCP server)"
        for name in tools.node_types
        if name not in registered
    ]


def _unknown_type(node: NodeDef, registered: Mapping[str, IRNodeType]) -> str:
    known = ", ".join(sorted(KNOWN_NODE_TYPES))
    reason = f"node {node.id!r} has unknown type {node.type!r} (built-in: {known}"
    if registered:
        reason += "; registered: " + ", ".join(sorted(registered))
    return reason + "); a type of your own is registered by its worker (PUT /v1/node-types)"


def _map_config_reasons(node: NodeDef, registered: Mapping[str, IRNodeType]) -> list[str]:
    """A map's config (``schemas.map_node``), and its inner node's config by that type's
    schema when the type is registered."""
    reasons = map_config_reasons(node.id, node.config, {*KNOWN_NODE_TYPES, *registered})
    inner = node.config.get("node")
    if not reasons and isinstance(inner, dict) and inner.get("type") in registered:
        schema = registered[inner["type"]].config_schema
        reasons.extend(
            config_reasons(f"{node.id}.node", inner["type"], inner.get("config", {}), schema)
        )
    concurrency = inner.get("concurrency") if isinstance(inner, dict) else None
    if not reasons and isinstance(concurrency, dict) and isinstance(concurrency.get("key"), str):
        reasons.extend(concurrency_key_reasons(f"{node.id}.node", concurrency["key"]))
    return reasons


def used_node_types(definition: WorkflowDefinition) -> set[str]:
    """The type names a definition names: its nodes' types, and the plain names in its agent
    nodes' ``tools`` (which may be node types offered as tools)."""
    names = {n.type for n in definition.nodes}
    for node in definition.nodes:
        inner = node.config.get("node") if node.type == MAP else None
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            names.add(inner["type"])
        tools = node.config.get("tools") if node.type == "agent" else None
        if isinstance(tools, list):
            names.update(t for t in tools if isinstance(t, str))
    return names


def _hitl_config_reasons(node: NodeDef) -> list[str]:
    where = f"node {node.id!r} (hitl)"
    reasons = []
    prompt = node.config.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        reasons.append(f"{where} needs config.prompt, the question for the approver")
    default = node.config.get("default_outcome")
    if default is not None and default not in EDGE_GUARDS["hitl"]:
        reasons.append(
            f"{where} has default_outcome {_shown(default)}; it must be 'approved' or 'rejected'"
        )
    if default is not None and node.timeout_s is None:
        reasons.append(
            f"{where} has a default_outcome but no timeout_s: set how long the approval may "
            "wait before the default is taken"
        )
    return reasons


def _wait_event_config_reasons(node: NodeDef) -> list[str]:
    where = f"node {node.id!r} (wait_event)"
    reasons = []
    for field, what in (("name", "the event's name"), ("key", "its correlation key")):
        value = node.config.get(field)
        if not isinstance(value, str) or not value.strip():
            reasons.append(f"{where} needs config.{field}, {what} (a string or a template)")
    unknown = sorted(set(node.config) - {"name", "key"})
    if unknown:
        reasons.append(f"{where} has config keys it does not take: {', '.join(unknown)}")
    return reasons


def _shown(value: object) -> str:
    """A value from a config as a reason quotes it: shortened, since it may be very long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def find_cycle(ids: list[str], edges: list[tuple[str, str]]) -> list[str] | None:
    """A cycle as a closed path of node ids, or None for a DAG."""
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(ids, white)
    parent: dict[str, str] = {}
    for start in ids:
        if colour[start] != white:
            continue
        stack = [(start, iter(succ[start]))]
        colour[start] = grey
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = black
                stack.pop()
            elif colour[child] == grey:
                path = [node]
                while path[-1] != child:
                    path.append(parent[path[-1]])
                return [*reversed(path), child]
            elif colour[child] == white:
                parent[child] = node
                colour[child] = grey
                stack.append((child, iter(succ[child])))
    return None


def compile_workflow(
    definition: WorkflowDefinition, node_types: Mapping[str, IRNodeType] | None = None
) -> WorkflowIR:
    """Validate the graph and build the IR. Raises InvalidWorkflow with every reason.

    The IR keeps those of ``node_types`` that the definition uses (``used_node_types``)."""
    reasons = validate_graph(definition, node_types)
    if reasons:
        raise InvalidWorkflow(reasons)
    preds: dict[str, list[IREdge]] = defaultdict(list)
    succs: dict[str, list[IREdge]] = defaultdict(list)
    for e in definition.edges:
        preds[e.to].append(IREdge(node=e.from_, when=e.when))
        succs[e.from_].append(IREdge(node=e.to, when=e.when))
    nodes = {
        n.id: IRNode(
            id=n.id,
            type=n.type,
            config=n.config,
            retry=n.retry or RetryPolicy(),
            timeout_s=n.timeout_s,
            concurrency=n.concurrency,
            rate_limit=n.rate_limit,
            predecessors=preds[n.id],
            successors=succs[n.id],
        )
        for n in definition.nodes
    }
    roots = [n.id for n in definition.nodes if not preds[n.id]]
    order = topological_order(nodes)
    used = used_node_types(definition)
    kept = {name: t for name, t in sorted((node_types or {}).items()) if name in used}
    return WorkflowIR(
        version=definition_version(definition),
        nodes=nodes,
        roots=roots,
        order=order,
        node_types=kept,
    )


def topological_order(nodes: dict[str, IRNode]) -> list[str]:
    """The nodes' ids, each after all its predecessors (Kahn's algorithm), taking ready nodes
    in the dict's order so the order is stable. Nodes on a cycle are left out."""
    indegree = {nid: len(node.predecessors) for nid, node in nodes.items()}
    position = {nid: i for i, nid in enumerate(nodes)}
    ready = [nid for nid, n in indegree.items() if n == 0]
    order: list[str] = []
    while ready:
        nid = ready.pop(0)
        order.append(nid)
        for edge in nodes[nid].successors:
            indegree[edge.node] -= 1
            if indegree[edge.node] == 0:
                ready.append(edge.node)
                ready.sort(key=position.__getitem__)
    return order
