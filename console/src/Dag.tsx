// A workflow's DAG, laid out by dagre (left to right) and drawn by React Flow, each node
// coloured by its status. The layout depends only on the definition, so a status change
// redraws colours without moving anything.
import { memo, useMemo } from "react";
import dagre from "@dagrejs/dagre";
import {
  Background,
  Controls,
  Handle,
  Position,
  ReactFlow,
  type Edge,
  type Node,
  type NodeProps,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";

export interface Definition {
  nodes: { id: string; type: string; config?: unknown }[];
  edges: { from: string; to: string; when?: string }[];
}

const WIDTH = 170;
const HEIGHT = 48;

type StatusNodeData = { label: string; type: string; status: string; selected: boolean };

const StatusNode = memo(function StatusNode({ data, id }: NodeProps<Node<StatusNodeData>>) {
  return (
    <div
      className={`dag-node status-${data.status}${data.selected ? " selected" : ""}`}
      data-testid="dag-node"
      data-node-id={id}
      data-status={data.status}
      title={`${id} (${data.type}): ${data.status}`}
    >
      <Handle type="target" position={Position.Left} />
      <div className="dag-node-id">{data.label}</div>
      <div className="dag-node-meta">
        {data.type} · {data.status.toLowerCase()}
      </div>
      <Handle type="source" position={Position.Right} />
    </div>
  );
});

const nodeTypes = { status: StatusNode };

function layout(def: Definition): Map<string, { x: number; y: number }> {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 60 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of def.nodes) g.setNode(n.id, { width: WIDTH, height: HEIGHT });
  for (const e of def.edges) if (g.hasNode(e.from) && g.hasNode(e.to)) g.setEdge(e.from, e.to);
  dagre.layout(g);
  const out = new Map<string, { x: number; y: number }>();
  for (const n of def.nodes) {
    const p = g.node(n.id);
    out.set(n.id, { x: p.x - WIDTH / 2, y: p.y - HEIGHT / 2 });
  }
  return out;
}

export function Dag({
  definition,
  statuses,
  selected,
  onSelect,
  height = 460,
}: {
  definition: Definition;
  statuses: Record<string, string>;
  selected?: string | null;
  onSelect?: (id: string) => void;
  height?: number;
}) {
  const positions = useMemo(() => layout(definition), [definition]);
  const edges: Edge[] = useMemo(
    () =>
      definition.edges.map((e, i) => ({
        id: `${i}:${e.from}->${e.to}`,
        source: e.from,
        target: e.to,
        label: e.when,
        animated: statuses[e.from] === "RUNNING",
      })),
    [definition, statuses],
  );
  const nodes: Node<StatusNodeData>[] = useMemo(
    () =>
      definition.nodes.map((n) => ({
        id: n.id,
        type: "status",
        position: positions.get(n.id) ?? { x: 0, y: 0 },
        data: {
          label: n.id,
          type: n.type,
          status: statuses[n.id] ?? "PENDING",
          selected: n.id === selected,
        },
        draggable: false,
        connectable: false,
      })),
    [definition, positions, statuses, selected],
  );
  return (
    <div className="dag" style={{ height }} data-testid="dag">
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView
        minZoom={0.05}
        nodesDraggable={false}
        nodesConnectable={false}
        onNodeClick={(_, n) => onSelect?.(n.id)}
        proOptions={{ hideAttribution: true }}
      >
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
